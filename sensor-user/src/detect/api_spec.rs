//! The operations an OpenAPI document declares, matched against route templates: a request to
//! a route the API does not document (a scanner's guess, a forgotten endpoint) is context for
//! the findings about its source.
//!
//! A document path's `{parameter}` segments match any route segment (a route template's `{id}`
//! included); its other segments match the same text. Paths are taken relative to the path of
//! each of the document's `servers` (`https://api.example.test/v1` serves its paths under
//! `/v1`), or to `/` without one.

use std::path::Path;

use openapiv3::{OpenAPI, ReferenceOr};

/// Why a document could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ApiSpecError {
    /// The file could not be read.
    #[error("cannot read the OpenAPI document {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not an OpenAPI 3 document.
    #[error("{path} is not an OpenAPI 3 document: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// One segment of a documented path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// Text that must be the same.
    Literal(String),
    /// A `{parameter}`: anything.
    Parameter,
}

/// The documented operations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiSpec {
    /// Method (upper case) and path segments (the server's base path first), per operation.
    operations: Vec<(String, Vec<Segment>)>,
}

impl ApiSpec {
    /// Reads a document, JSON when its name ends in `.json`, YAML otherwise.
    pub fn load(path: &Path) -> Result<Self, ApiSpecError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ApiSpecError::Read {
            path: name.clone(),
            source,
        })?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Self::parse(&text, json).map_err(|reason| ApiSpecError::Parse { path: name, reason })
    }

    /// Parses a document's text.
    pub fn parse(text: &str, json: bool) -> Result<Self, String> {
        let doc: OpenAPI = if json {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
        };
        if !doc.openapi.starts_with('3') {
            return Err(format!("version {:?}, not 3.x", doc.openapi));
        }
        let mut bases: Vec<Vec<Segment>> = doc
            .servers
            .iter()
            .map(|s| segments(base_path(&s.url)))
            .collect();
        if bases.is_empty() {
            bases.push(Vec::new());
        }
        let mut operations = Vec::new();
        for (path, item) in &doc.paths.paths {
            let ReferenceOr::Item(item) = item else {
                continue;
            };
            let methods = item.iter().map(|(method, _)| method.to_ascii_uppercase());
            for method in methods {
                for base in &bases {
                    let mut segs = base.clone();
                    segs.extend(segments(path));
                    operations.push((method.clone(), segs));
                }
            }
        }
        Ok(Self { operations })
    }

    /// Operations declared.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether it declares none.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// Whether `method` on `route` (a route template) is a documented operation.
    pub fn documents(&self, method: &str, route: &str) -> bool {
        let route: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).collect();
        self.operations.iter().any(|(m, segs)| {
            m.eq_ignore_ascii_case(method)
                && segs.len() == route.len()
                && segs.iter().zip(&route).all(|(s, r)| match s {
                    Segment::Parameter => true,
                    Segment::Literal(l) => l == r,
                })
        })
    }
}

/// The path of a server URL (`https://host/v1` is `/v1`; a relative URL is its own path).
fn base_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = if url.contains("://") {
        rest.find('/').map_or("", |i| rest.get(i..).unwrap_or(""))
    } else {
        rest
    };
    path.split(['?', '#']).next().unwrap_or("")
}

/// The segments of a documented path.
fn segments(path: &str) -> Vec<Segment> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                Segment::Parameter
            } else {
                Segment::Literal(s.to_owned())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
openapi: 3.0.3
info: {title: shop, version: "1"}
servers:
  - url: https://api.example.test/v1
paths:
  /users/{userId}:
    get: {responses: {"200": {description: ok}}}
    delete: {responses: {"204": {description: gone}}}
  /users/me/orders:
    get: {responses: {"200": {description: ok}}}
  /login:
    post: {responses: {"200": {description: ok}}}
"#;

    #[test]
    fn documented_operations_match_route_templates() {
        let spec = ApiSpec::parse(DOC, false).expect("spec");
        assert_eq!(spec.len(), 4);
        let cases = [
            ("GET", "/v1/users/{id}", true),
            ("DELETE", "/v1/users/{id}", true),
            ("GET", "/v1/users/me", true),
            ("GET", "/v1/users/me/orders", true),
            ("POST", "/v1/login", true),
            ("PUT", "/v1/users/{id}", false),
            ("GET", "/v1/admin", false),
            ("GET", "/users/{id}", false),
            ("GET", "/v1/users/{id}/orders", false),
            ("POST", "/v1/login/", true),
        ];
        for (method, route, want) in cases {
            assert_eq!(spec.documents(method, route), want, "{method} {route}");
        }
    }

    #[test]
    fn json_and_bad_documents() {
        let json = r#"{"openapi":"3.1.0","info":{"title":"t","version":"1"},
            "paths":{"/health":{"get":{"responses":{"200":{"description":"ok"}}}}}}"#;
        let spec = ApiSpec::parse(json, true).expect("json spec");
        assert!(spec.documents("GET", "/health"));
        assert!(!spec.documents("GET", "/v1/health"));
        assert!(
            ApiSpec::parse("openapi: 3.0.0\n", false).is_err(),
            "no info, no paths"
        );
        assert!(ApiSpec::parse("{", true).is_err());
        let swagger = "openapi: 2.0\ninfo: {title: t, version: '1'}\npaths: {}\n";
        assert!(ApiSpec::parse(swagger, false).is_err());
        let missing = ApiSpec::load(Path::new("/nonexistent/openapi.yaml"));
        assert!(matches!(missing, Err(ApiSpecError::Read { .. })));
    }
}
