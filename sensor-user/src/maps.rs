//! TODO(owner): maps
