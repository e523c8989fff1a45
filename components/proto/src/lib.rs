//! Protocol messages of regionstore.
//!
//! `metapb`, `raft_serverpb`, `raft_cmdpb`, `errorpb`, `kvrpcpb` and `pdpb` are generated at build time from
//! `proto/*.proto` by the pure-Rust protobuf 2 code generator. `eraftpb` is raft-rs's own,
//! re-exported from `raft-proto`, so raft messages need no conversion.
//!
//! Every other crate of the workspace names protobuf types through this crate only, so that
//! the codec can change in one place (protobuf 2 has known advisories).

macro_rules! generated {
    ($name:ident) => {
        // Generated code: not ours to lint.
        #[allow(warnings, clippy::all, clippy::pedantic)]
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".rs"));
        }
    };
}

pub use raft_proto::eraftpb;

generated!(metapb);
generated!(raft_serverpb);
generated!(raft_cmdpb);
generated!(errorpb);
generated!(kvrpcpb);
generated!(pdpb);

/// The message trait and the encode/decode helpers of the codec in use.
pub use protobuf::Message;

/// Re-export of the protobuf runtime, for code that needs its extra types.
pub use protobuf;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_embedded_raft_message() {
        let mut msg = raft_serverpb::RaftMessage::default();
        msg.region_id = 7;
        msg.mut_from_peer().id = 1;
        msg.mut_to_peer().store_id = 2;
        msg.mut_message().set_msg_type(eraftpb::MessageType::MsgHeartbeat);
        msg.mut_message().term = 9;
        msg.mut_region_epoch().version = 3;
        msg.end_key = b"k".to_vec();
        let bytes = msg.write_to_bytes().unwrap();
        let back = raft_serverpb::RaftMessage::parse_from_bytes(&bytes).unwrap();
        assert_eq!(back, msg);
        assert_eq!(back.get_message().term, 9);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let err = raft_serverpb::RaftLocalState::parse_from_bytes(&[0xff, 0xff, 0xff]);
        assert!(err.is_err());
    }
}
