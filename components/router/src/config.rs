//! Configuration of a batch system.

/// Tuning of a [`crate::BatchSystem`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Poller threads.
    pub pool_size: usize,
    /// Most FSMs one poller handles in one round.
    pub max_batch_size: usize,
    /// Most messages a handler should take from one FSM's mailbox in one round; handlers read
    /// it from [`crate::PollHandler`]'s builder. It bounds how long one busy FSM holds a round.
    pub messages_per_tick: usize,
    /// An FSM that stays busy for this many consecutive rounds goes to the back of the ready
    /// queue, so that FSMs waiting there get a poller.
    pub reschedule_rounds: usize,
    /// Soft bound of each normal mailbox: `try_send` beyond it fails with `Full`;
    /// `force_send` ignores it.
    pub mailbox_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pool_size: 2,
            max_batch_size: 256,
            messages_per_tick: 4096,
            reschedule_rounds: 16,
            mailbox_capacity: 4096,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch system config: {field} {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// Why it is refused.
    pub reason: &'static str,
}

impl Config {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fields = [
            ("pool_size", self.pool_size),
            ("max_batch_size", self.max_batch_size),
            ("messages_per_tick", self.messages_per_tick),
            ("reschedule_rounds", self.reschedule_rounds),
            ("mailbox_capacity", self.mailbox_capacity),
        ];
        for (field, value) in fields {
            if value == 0 {
                return Err(ConfigError { field, reason: "must be at least 1" });
            }
        }
        if self.pool_size > 1024 {
            return Err(ConfigError { field: "pool_size", reason: "must be at most 1024" });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_zeroes_are_not() {
        Config::default().validate().unwrap();
        let cfg = Config { max_batch_size: 0, ..Config::default() };
        assert_eq!(cfg.validate().unwrap_err().field, "max_batch_size");
        let cfg = Config { pool_size: 5000, ..Config::default() };
        assert_eq!(cfg.validate().unwrap_err().field, "pool_size");
    }
}
