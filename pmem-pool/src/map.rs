//! Mapping a pool file or a device-dax device.
//!
//! TODO(H3).
