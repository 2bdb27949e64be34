//! Event history: the [`Store`] trait the hub saves pushes to and resends missed events from
//! (crate `ssehub-store`), [`MemoryStore`], and the embedded on-disk [`RedbStore`] (crate
//! `ssehub-store-redb`, feature `redb`), re-exported so that an application needs only the hub.
//!
//! ```
//! use ssehub_hub::store::MemoryStore;
//! use ssehub_hub::Hub;
//!
//! let hub = Hub::builder()
//!     .store(MemoryStore::new(10_000))
//!     .resend(true)
//!     .build().unwrap();
//! ```

pub use ssehub_store::*;
#[cfg(feature = "redb")]
pub use ssehub_store_redb::RedbStore;
