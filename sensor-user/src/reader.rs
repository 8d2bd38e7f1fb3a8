//! TODO(owner): reader
