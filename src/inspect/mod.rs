//! Looking at locks from the outside: `/proc/locks` and fdinfo, processes, soft-lock
//! markers, and what they add up to for each kind of lock. Nothing here takes a lock.

pub mod descriptors;
pub mod marker;
pub mod proc_locks;
pub mod process;
pub mod sighting;
pub mod sqlite_roles;
