//! The generated items (`/items/{id}`, ids `1..=N`) and the search over their names. Everything
//! is a function of the id, so answers are the same on every run.
use serde::Serialize;

/// First word of an item's name, chosen by `id % 16`.
const COLOURS: [&str; 16] = [
    "amber", "azure", "black", "bronze", "coral", "crimson", "golden", "green", "indigo", "ivory",
    "olive", "orange", "silver", "teal", "violet", "white",
];
/// Second word of an item's name, chosen by `(id / 16) % 16`.
const THINGS: [&str; 16] = [
    "anchor", "basket", "candle", "compass", "kettle", "lamp", "lantern", "mirror", "notebook",
    "pencil", "rope", "saddle", "shovel", "teapot", "umbrella", "whistle",
];
/// How many distinct names there are; names repeat with this period.
const NAME_PERIOD: u64 = 256;
/// The most results a search returns.
pub const SEARCH_LIMIT: usize = 10;

/// One item as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Its id.
    pub id: u64,
    /// Its name, two words.
    pub name: String,
    /// Its price in cents.
    pub price_cents: u64,
    /// How many are in stock.
    pub stock: u64,
}

/// Item `id` (whether it exists is the caller's business).
pub fn item(id: u64) -> Item {
    Item {
        id,
        name: name(id),
        price_cents: 100 + id.wrapping_mul(7919) % 10_000,
        stock: id.wrapping_mul(31) % 97,
    }
}

/// The name of item `id`.
fn name(id: u64) -> String {
    let (colour, thing) = words(id % NAME_PERIOD);
    format!("{colour} {thing}")
}

/// The two words of name number `k` (`k < NAME_PERIOD`).
fn words(k: u64) -> (&'static str, &'static str) {
    // Both indexes are below 16.
    let (c, t) = ((k % 16) as usize, ((k / 16) % 16) as usize);
    (COLOURS[c], THINGS[t])
}

/// The first [`SEARCH_LIMIT`] items among `1..=items` whose name contains `query`
/// (case-insensitive), in id order. Costs at most one pass over the 256 names and one table
/// lookup per id.
pub fn search(query: &str, items: u64) -> Vec<Item> {
    let query = query.to_lowercase();
    let matching: Vec<bool> = (0..NAME_PERIOD)
        .map(|k| {
            let (colour, thing) = words(k);
            format!("{colour} {thing}").contains(&query)
        })
        .collect();
    if !matching.contains(&true) {
        return Vec::new();
    }
    (1..=items)
        // The index is below 256.
        .filter(|id| matching[(id % NAME_PERIOD) as usize])
        .take(SEARCH_LIMIT)
        .map(item)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{SEARCH_LIMIT, item, search};

    #[test]
    fn items_are_deterministic() {
        assert_eq!(item(5), item(5));
        assert_eq!(item(5).name, "crimson anchor");
        assert_eq!(item(17).name, "azure basket");
        assert_ne!(item(5).price_cents, item(6).price_cents);
    }

    #[test]
    fn search_finds_names_in_id_order_and_stops_at_the_limit() {
        let ids = |q: &str, n: u64| search(q, n).iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(
            ids("crimson anchor", 10_000),
            [5, 261, 517, 773, 1029, 1285, 1541, 1797, 2053, 2309]
        );
        assert_eq!(ids("CRIMSON ANCHOR", 600), [5, 261, 517]);
        assert_eq!(search("lamp", 10_000).len(), SEARCH_LIMIT);
        assert!(
            search("lamp", 10_000)
                .iter()
                .all(|i| i.name.contains("lamp"))
        );
        assert_eq!(ids("nothing like this", 10_000), Vec::<u64>::new());
        assert_eq!(ids("lamp", 0), Vec::<u64>::new());
    }
}
