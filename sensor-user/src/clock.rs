//! TODO(owner): clock
