//! Loading the embedded eBPF object, pinning its maps, configuring and attaching the programs.
//!
//! Pinning: every map is pinned as `<pin dir>/<MAP NAME>`. Loading reuses an existing pin, so
//! the enforcement maps (`map_names::PERSISTENT`) keep their blocks across agent restarts. Pins
//! of the other maps (counters, rings, config) are removed before loading, so a restart with
//! other sizes starts them fresh. Only one agent may own a pin directory at a time: an
//! exclusive `flock` on a lock file under `/run/apisensor/` enforces it.
use std::{
    fs::{self, File},
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, MapError},
    programs::{
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        tc::{self, NlOptions, TcAttachOptions},
    },
};
use sensor_common::{SensorConfig, capacity, map_names, program_names};

/// The kernel object, built by `build.rs` and embedded in the binary.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/apisensor"));

/// Default directory for pinned maps.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/apisensor";
/// Directory of the agents' lock files.
pub const LOCK_DIR: &str = "/run/apisensor";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Errors of loading and attaching.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The binary was built with `AYA_BUILD_SKIP=1`.
    #[error(
        "this binary has no eBPF object (it was built with AYA_BUILD_SKIP=1); rebuild without it"
    )]
    NoObject,
    /// Not running as root.
    #[error("apisensor must run as root to load eBPF programs (euid is {euid})")]
    NotRoot {
        /// Effective uid.
        euid: u32,
    },
    /// bpffs is missing and could not be mounted.
    #[error("{path} is not a BPF filesystem and mounting one failed: {source}")]
    NoBpfFs {
        /// The pin directory's parent.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Filesystem error on the pin directory or lock file.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Another agent holds the lock.
    #[error("another apisensor agent already owns {pin_dir} (lock {lock}); stop it first")]
    AlreadyRunning {
        /// Pin directory.
        pin_dir: PathBuf,
        /// Lock file.
        lock: PathBuf,
    },
    /// The object failed to load (verifier, BTF, kernel support).
    #[error("loading the eBPF object failed (is BPF supported and enabled in this kernel?): {0}")]
    Load(#[from] aya::EbpfError),
    /// The object could not be parsed (for its map definitions).
    #[error("parsing the eBPF object: {0}")]
    Parse(#[from] aya_obj::ParseError),
    /// A persistent pin was made by a version whose map definition differs from this one's.
    #[error(
        "pinned map {path} is {found}, but this version of apisensor needs {want}: it was made by \
         an incompatible version. Remove it to start with an empty map (its entries are lost)"
    )]
    IncompatiblePin {
        /// The pin.
        path: PathBuf,
        /// The pinned map.
        found: MapShape,
        /// What the object defines.
        want: MapShape,
    },
    /// A program is missing from the object.
    #[error("program {0} not found in the eBPF object")]
    MissingProgram(&'static str),
    /// A map is missing from the object.
    #[error("map {0} not found in the eBPF object")]
    MissingMap(&'static str),
    /// A program operation failed.
    #[error("{what} on {iface}: {source}")]
    Program {
        /// What was being done.
        what: &'static str,
        /// Interface.
        iface: String,
        /// Why.
        source: ProgramError,
    },
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Why.
        source: MapError,
    },
    /// The interface does not exist.
    #[error("unknown interface {0}")]
    UnknownInterface(String),
    /// The interface already has a program attached at this hook.
    #[error(
        "{iface} already has an {hook} program attached (another apisensor agent or another tool); \
         stop it or detach it first"
    )]
    InterfaceBusy {
        /// Interface.
        iface: String,
        /// `XDP` or `TC`.
        hook: &'static str,
    },
}

/// How to attach XDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpAttachMode {
    /// Native (driver) mode, falling back to generic mode if the driver refuses.
    #[default]
    Auto,
    /// Native mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// Options for [`load`].
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Where to pin maps; `None` pins nothing (tests, benchmarks).
    pub pin_dir: Option<PathBuf>,
    /// Capacity of the per-source LRU map.
    pub max_sources: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            pin_dir: Some(PathBuf::from(DEFAULT_PIN_DIR)),
            max_sources: capacity::SOURCES,
        }
    }
}

/// Fails with [`LoadError::NotRoot`] unless running as root.
pub fn require_root() -> Result<(), LoadError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        Ok(())
    } else {
        Err(LoadError::NotRoot { euid })
    }
}

/// Makes sure the parent of `pin_dir` is on a BPF filesystem, mounting one at
/// `/sys/fs/bpf` if needed, and creates `pin_dir`.
pub fn prepare_pin_dir(pin_dir: &Path) -> Result<(), LoadError> {
    let parent = pin_dir.parent().unwrap_or(Path::new("/"));
    if !is_bpffs(parent) {
        if parent == Path::new("/sys/fs/bpf") {
            mount_bpffs(parent).map_err(|source| LoadError::NoBpfFs {
                path: parent.to_path_buf(),
                source,
            })?;
        } else {
            return Err(LoadError::NoBpfFs {
                path: parent.to_path_buf(),
                source: io::Error::other("not a bpf filesystem"),
            });
        }
    }
    fs::create_dir_all(pin_dir).map_err(|source| LoadError::Io {
        what: "creating pin directory",
        path: pin_dir.to_path_buf(),
        source,
    })
}

/// True if `path` is on a BPF filesystem.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &raw mut st) == 0 && st.f_type == BPF_FS_MAGIC
    }
}

fn mount_bpffs(at: &Path) -> io::Result<()> {
    let target = std::ffi::CString::new(at.as_os_str().as_encoded_bytes())?;
    // SAFETY: all pointers are valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An exclusive lock on a pin directory, held for the agent's lifetime.
#[derive(Debug)]
pub struct AgentLock {
    _file: File,
}

/// The lock files of a pin directory under [`LOCK_DIR`]: the agent's, then the verdict
/// writers'.
pub fn lock_files(pin_dir: &Path) -> [PathBuf; 2] {
    let name: String = pin_dir
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = Path::new(LOCK_DIR);
    [
        dir.join(format!("{name}.lock")),
        dir.join(format!("{name}.verdicts.lock")),
    ]
}

/// Takes the agent lock for `pin_dir`, failing if another agent holds it.
pub fn lock_pin_dir(pin_dir: &Path) -> Result<AgentLock, LoadError> {
    let [lock, _] = lock_files(pin_dir);
    let dir = Path::new(LOCK_DIR);
    fs::create_dir_all(dir).map_err(|source| LoadError::Io {
        what: "creating lock directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let file = File::create(&lock).map_err(|source| LoadError::Io {
        what: "creating lock file",
        path: lock.clone(),
        source,
    })?;
    // SAFETY: flock on an owned, open descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(LoadError::AlreadyRunning {
            pin_dir: pin_dir.to_path_buf(),
            lock,
        });
    }
    Ok(AgentLock { _file: file })
}

/// What must match for a pinned map to be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapShape {
    /// `bpf_map_type`.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// Creation flags.
    pub flags: u32,
}

impl std::fmt::Display for MapShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "type {}, key {} B, value {} B, {} entries, flags {:#x}",
            self.map_type, self.key_size, self.value_size, self.max_entries, self.flags
        )
    }
}

/// Checks every persistent pin under `dir` against the definition of its map in `object`.
/// aya reuses a pin by name without looking at it, so a pin left by a version with another
/// layout would otherwise surface as a verifier error, or worse, as misread entries.
fn check_persistent_pins(object: &[u8], dir: &Path) -> Result<(), LoadError> {
    let obj = aya_obj::Object::parse(object)?;
    for name in map_names::PERSISTENT {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let def = obj.maps.get(name).ok_or(LoadError::MissingMap(name))?;
        let want = MapShape {
            map_type: def.map_type(),
            key_size: def.key_size(),
            value_size: def.value_size(),
            max_entries: def.max_entries(),
            flags: def.map_flags(),
        };
        let info = MapData::from_pin(&path)
            .and_then(|m| m.info())
            .map_err(|source| LoadError::Map { map: name, source })?;
        let found = MapShape {
            map_type: info.map_type().map_or(u32::MAX, |t| t as u32),
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            flags: info.map_flags(),
        };
        if found != want {
            return Err(LoadError::IncompatiblePin { path, found, want });
        }
    }
    Ok(())
}

/// Loads the embedded object. With a pin directory, the caller must hold its [`AgentLock`].
pub fn load(opts: &LoadOptions) -> Result<Ebpf, LoadError> {
    load_object(EBPF_OBJECT, opts)
}

/// Loads `object` (see [`load`]).
pub fn load_object(object: &[u8], opts: &LoadOptions) -> Result<Ebpf, LoadError> {
    if object.is_empty() {
        return Err(LoadError::NoObject);
    }
    require_root()?;
    let pins: Vec<(&'static str, PathBuf)> = match &opts.pin_dir {
        Some(dir) => {
            prepare_pin_dir(dir)?;
            check_persistent_pins(object, dir)?;
            for name in map_names::ALL {
                let path = dir.join(name);
                if !map_names::PERSISTENT.contains(&name) && path.exists() {
                    fs::remove_file(&path).map_err(|source| LoadError::Io {
                        what: "removing stale pin",
                        path: path.clone(),
                        source,
                    })?;
                }
            }
            map_names::ALL.iter().map(|n| (*n, dir.join(n))).collect()
        }
        None => Vec::new(),
    };
    let mut loader = EbpfLoader::new();
    loader.map_max_entries(map_names::SOURCES, opts.max_sources);
    for (name, path) in &pins {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader.load(object)?;
    for name in [program_names::XDP_INGRESS, program_names::TC_EGRESS] {
        let prog = ebpf
            .program_mut(name)
            .ok_or(LoadError::MissingProgram(name))?;
        let result = match prog {
            aya::programs::Program::Xdp(p) => p.load(),
            aya::programs::Program::SchedClassifier(p) => p.load(),
            _ => return Err(LoadError::MissingProgram(name)),
        };
        result.map_err(|source| LoadError::Program {
            what: "loading program",
            iface: String::from("-"),
            source,
        })?;
    }
    Ok(ebpf)
}

/// Writes the run-time configuration and the monitored ports.
pub fn configure(ebpf: &mut Ebpf, cfg: SensorConfig, ports: &[u16]) -> Result<(), LoadError> {
    {
        let map = ebpf
            .map_mut(map_names::CONFIG)
            .ok_or(LoadError::MissingMap(map_names::CONFIG))?;
        let mut config: Array<_, SensorConfig> =
            Array::try_from(map).map_err(|source| LoadError::Map {
                map: map_names::CONFIG,
                source,
            })?;
        config.set(0, cfg, 0).map_err(|source| LoadError::Map {
            map: map_names::CONFIG,
            source,
        })?;
    }
    let map = ebpf
        .map_mut(map_names::PORTS)
        .ok_or(LoadError::MissingMap(map_names::PORTS))?;
    let mut map: Array<_, u8> = Array::try_from(map).map_err(|source| LoadError::Map {
        map: map_names::PORTS,
        source,
    })?;
    for port in ports {
        map.set(u32::from(*port), 1, 0)
            .map_err(|source| LoadError::Map {
                map: map_names::PORTS,
                source,
            })?;
    }
    Ok(())
}

/// Attaches XDP to `iface`. Returns the mode used.
pub fn attach_xdp(ebpf: &mut Ebpf, iface: &str, mode: XdpAttachMode) -> Result<XdpMode, LoadError> {
    let prog: &mut Xdp = ebpf
        .program_mut(program_names::XDP_INGRESS)
        .and_then(|p| p.try_into().ok())
        .ok_or(LoadError::MissingProgram(program_names::XDP_INGRESS))?;
    let err = |source| match source {
        ProgramError::UnknownInterface { name } => LoadError::UnknownInterface(name),
        e if is_busy(&e) => LoadError::InterfaceBusy {
            iface: iface.to_owned(),
            hook: "XDP",
        },
        source => LoadError::Program {
            what: "attaching XDP",
            iface: iface.to_owned(),
            source,
        },
    };
    match mode {
        XdpAttachMode::Native => prog
            .attach(iface, XdpMode::Driver)
            .map(|_| XdpMode::Driver)
            .map_err(err),
        XdpAttachMode::Generic => prog
            .attach(iface, XdpMode::Skb)
            .map(|_| XdpMode::Skb)
            .map_err(err),
        XdpAttachMode::Auto => match prog.attach(iface, XdpMode::Driver) {
            Ok(_) => Ok(XdpMode::Driver),
            Err(e @ ProgramError::UnknownInterface { .. }) => Err(err(e)),
            Err(e) if is_busy(&e) => Err(err(e)),
            Err(native) => {
                tracing::warn!(%iface, error = %native, "native XDP refused, trying generic mode");
                prog.attach(iface, XdpMode::Skb)
                    .map(|_| XdpMode::Skb)
                    .map_err(err)
            }
        },
    }
}

/// True when an attach failed because the hook is taken (`EEXIST` or `EBUSY`).
fn is_busy(e: &ProgramError) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EEXIST | libc::EBUSY))
        {
            return true;
        }
        if let Some(sys) = err.downcast_ref::<aya::sys::SyscallError>()
            && matches!(
                sys.io_error.raw_os_error(),
                Some(libc::EEXIST | libc::EBUSY)
            )
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// How the TC program was attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcMode {
    /// A TCX link (kernel 6.6 and later).
    Tcx,
    /// A netlink filter on a `clsact` qdisc.
    Clsact,
}

/// How to attach TC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcAttachMode {
    /// TCX, falling back to a `clsact` filter if the kernel refuses.
    #[default]
    Auto,
    /// TCX only.
    Tcx,
    /// A `clsact` filter only (kernels before 6.6).
    Clsact,
}

/// Attaches the TC egress program: TCX first, a `clsact` filter as fallback (or as `mode` says).
pub fn attach_tc(ebpf: &mut Ebpf, iface: &str, mode: TcAttachMode) -> Result<TcMode, LoadError> {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(program_names::TC_EGRESS)
        .and_then(|p| p.try_into().ok())
        .ok_or(LoadError::MissingProgram(program_names::TC_EGRESS))?;
    let err = |source| match source {
        ProgramError::UnknownInterface { name } => LoadError::UnknownInterface(name),
        source => LoadError::Program {
            what: "attaching TC egress",
            iface: iface.to_owned(),
            source,
        },
    };
    if mode != TcAttachMode::Clsact {
        let tcx = prog.attach_with_options(
            iface,
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(aya::programs::LinkOrder::default()),
        );
        match tcx {
            Ok(_) => return Ok(TcMode::Tcx),
            Err(e @ ProgramError::UnknownInterface { .. }) => return Err(err(e)),
            Err(e) if mode == TcAttachMode::Tcx => return Err(err(e)),
            Err(e) => {
                tracing::warn!(%iface, error = %e, "TCX attach failed, falling back to clsact");
            }
        }
    }
    // EEXIST only means the qdisc is there already; any real problem shows in the attach.
    let _ = tc::qdisc_add_clsact(iface);
    prog.attach_with_options(
        iface,
        TcAttachType::Egress,
        TcAttachOptions::Netlink(NlOptions::default()),
    )
    .map(|_| TcMode::Clsact)
    .map_err(err)
}
