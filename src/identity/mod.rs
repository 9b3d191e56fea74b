//! Who may use the tracker: accounts of people (with a role), API tokens of scripts, plugin
//! keys, browser sessions, and the in-memory [`Directory`] that recognizes them on every request
//! and socket without waiting for the database.

mod directory;
mod roles;
pub(crate) mod secrets;

pub(crate) use directory::{
    Binding, Directory, DirectoryConfig, KeyLimits, LEGACY_KEY, LoginError, Watch,
};
pub use roles::Role;
pub(crate) use roles::{Principal, Via};
