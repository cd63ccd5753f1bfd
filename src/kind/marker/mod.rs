//! The marker family: locks that are files on disk whose presence means "held", written
//! as py-filelock writes them. The soft kind (`SoftFileLock`) and the soft lease
//! (`SoftFileLease`) are built from these parts, and the soft reader/writer kind uses the
//! file mechanics, the takeover and the heartbeat for its own records.
//!
//! * `file`: creating, pinning and re-checking markers, takeover names, change watches;
//! * `takeover`: replacing a marker whose owner is gone, safely among contenders;
//! * `heartbeat`: the thread that renews a hold's records and says when it is lost;
//! * `status`: what busy messages and `status` say about a marker;
//! * `slots`: the names of a semaphore's slot markers and the record of its number.

pub(crate) mod file;
pub(crate) mod heartbeat;
pub(crate) mod slots;
pub(crate) mod status;
pub(crate) mod takeover;
