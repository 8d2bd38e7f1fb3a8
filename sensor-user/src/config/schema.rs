//! The keys the loader accepts, found by walking `Config`'s `Deserialize` impl with a probing
//! deserializer: each struct records its field names under their dotted path, and each field
//! is then probed in turn (a list with one entry, so that the keys of an array of tables are
//! found too). The tests compare them with the keys the embedded default documents.
use std::{cell::RefCell, collections::BTreeSet, fmt};

use serde::de::{self, DeserializeSeed, Visitor, value::StrDeserializer};

/// The dotted keys `T` accepts; an entry of an array of tables adds its keys under the array's.
pub fn accepted_keys<'de, T: serde::Deserialize<'de>>() -> BTreeSet<String> {
    let keys = RefCell::new(BTreeSet::new());
    T::deserialize(Probe {
        path: String::new(),
        keys: &keys,
    })
    .unwrap_or_else(|e| panic!("probing the schema: {e}"));
    keys.into_inner()
}

/// Why probing failed.
#[derive(Debug)]
struct ProbeError(String);

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Deserializes the value at `path`, recording struct fields in `keys`.
struct Probe<'k> {
    path: String,
    keys: &'k RefCell<BTreeSet<String>>,
}

impl Probe<'_> {
    fn at(&self, field: &str) -> Self {
        let path = if self.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.path)
        };
        Self {
            path,
            keys: self.keys,
        }
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError(format!(
            "{}: a self-describing value",
            self.path
        )))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_bool(false)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_u64(1)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_u64(1)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_u64(1)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_u64(1)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_i64(1)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_f64(1.0)
    }

    // A string that every string field takes (`login_path_suffixes` wants a leading `/`); a
    // list entry that refuses it (an address prefix) only leaves its list empty.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_str("/x")
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_str("/x")
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_seq(OneEntry { probe: Some(self) })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        let mut keys = self.keys.borrow_mut();
        keys.extend(fields.iter().map(|f| self.at(f).path));
        drop(keys);
        visitor.visit_map(Fields {
            probe: self,
            names: fields.iter(),
            next: None,
        })
    }

    // An enum of unit variants (the attach modes): its first variant.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        let first = variants.first().copied().unwrap_or_default();
        visitor.visit_enum(StrDeserializer::<ProbeError>::new(first))
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i128 u128 f32 char bytes byte_buf unit unit_struct newtype_struct tuple
        tuple_struct map identifier ignored_any
    }
}

/// A list of one probed entry; an entry that refuses the probe's values ends the list.
struct OneEntry<'k> {
    probe: Option<Probe<'k>>,
}

impl<'de> de::SeqAccess<'de> for OneEntry<'_> {
    type Error = ProbeError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, ProbeError> {
        Ok(self.probe.take().and_then(|p| seed.deserialize(p).ok()))
    }
}

/// A struct's fields, each with a probe at its path.
struct Fields<'k> {
    probe: Probe<'k>,
    names: std::slice::Iter<'static, &'static str>,
    next: Option<&'static str>,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        let Some(field) = self.names.next() else {
            return Ok(None);
        };
        self.next = Some(field);
        seed.deserialize(StrDeserializer::new(field)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        let field = self.next.take().unwrap_or_default();
        seed.deserialize(self.probe.at(field))
    }
}
