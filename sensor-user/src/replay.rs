//! TODO(owner): replay
