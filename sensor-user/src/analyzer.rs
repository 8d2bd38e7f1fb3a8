//! TODO(owner): analyzer
