//! Integration tests of regionstore, one module per topic, in one binary so that they link
//! once.

mod raftstore;
