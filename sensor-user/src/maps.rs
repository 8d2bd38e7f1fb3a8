//! Read access to the pinned maps, for the CLI and the agent. Writing block and allow entries
//! is `verdict.rs`'s job alone.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use aya::maps::{HashMap, Map, MapData, MapError, PerCpuArray};
use sensor_common::{Addr, Counter, SourceStats, map_names};

use crate::event::addr_to_ip;

/// Errors opening or reading pinned maps.
#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    /// The pin does not exist: no agent ever ran with this pin directory.
    #[error(
        "map {path} is not pinned; start the agent first (`apisensor run --iface IFACE`) or pass --pin-dir"
    )]
    NotPinned {
        /// Expected pin path.
        path: PathBuf,
    },
    /// Opening or using the map failed.
    #[error("map {path}: {source}")]
    Map {
        /// Pin path.
        path: PathBuf,
        /// Why.
        source: MapError,
    },
}

/// Opens the pinned map `name` under `pin_dir`.
pub fn open(pin_dir: &Path, name: &str) -> Result<Map, MapsError> {
    let path = pin_dir.join(name);
    if !path.exists() {
        return Err(MapsError::NotPinned { path });
    }
    let wrap = |source| MapsError::Map {
        path: path.clone(),
        source,
    };
    let data = MapData::from_pin(&path).map_err(wrap)?;
    Map::from_map_data(data).map_err(wrap)
}

/// Sums the per-CPU counters, in [`Counter`] index order.
pub fn read_counters(pin_dir: &Path) -> Result<Vec<(Counter, u64)>, MapsError> {
    let path = pin_dir.join(map_names::STATS);
    let wrap = |source| MapsError::Map {
        path: path.clone(),
        source,
    };
    let stats: PerCpuArray<_, u64> =
        PerCpuArray::try_from(open(pin_dir, map_names::STATS)?).map_err(wrap)?;
    Counter::ALL
        .iter()
        .map(|c| {
            let per_cpu = stats.get(&(*c as u32), 0).map_err(wrap)?;
            Ok((*c, per_cpu.iter().sum()))
        })
        .collect()
}

/// Every tracked source with its counters.
pub fn read_sources(pin_dir: &Path) -> Result<Vec<(IpAddr, SourceStats)>, MapsError> {
    let path = pin_dir.join(map_names::SOURCES);
    let wrap = |source| MapsError::Map {
        path: path.clone(),
        source,
    };
    let map: HashMap<_, Addr, SourceStats> =
        HashMap::try_from(open(pin_dir, map_names::SOURCES)?).map_err(wrap)?;
    let mut out = Vec::new();
    for item in &map {
        match item {
            Ok((addr, stats)) => out.push((addr_to_ip(&addr), stats)),
            // An entry evicted while iterating is not an error.
            Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(wrap(e)),
        }
    }
    Ok(out)
}
