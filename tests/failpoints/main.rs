//! Races that only fail points reach. Run with `--features failpoints`, one test at a time.

mod test_bootstrap;
mod test_crash;
mod test_hibernate;
mod test_life;
mod test_merge;
mod test_read;
mod test_split;
mod test_storage;
mod util;
