//! TODO(owner): event
