//! TODO(owner): verdict
