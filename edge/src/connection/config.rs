//! The protocol state machine's settings: which application it serves and the input limits.

use std::sync::Arc;

use crate::rtmp::chunk_reader::{InputBudget, ReaderLimits};

/// Settings of the protocol state machine.
#[derive(Debug, Clone)]
pub struct ProtocolConfig {
    /// The only RTMP application served (`rtmp://HOST/<app>/<key or name>`).
    pub app: String,
    pub limits: ReaderLimits,
    /// Most bytes buffered while a publish/play decision is pending.
    pub max_pending_input: usize,
    /// Most AMF0 values in one command (nested values and object properties count).
    pub max_command_values: usize,
    /// Shared by every connection of the process: input buffered by connections that are not
    /// admitted publishers.
    pub budget: Arc<InputBudget>,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            app: "live".into(),
            limits: ReaderLimits::default(),
            max_pending_input: 256 * 1024,
            max_command_values: 128,
            budget: InputBudget::new(64 * 1024 * 1024),
        }
    }
}
