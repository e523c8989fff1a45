//! A tonic codec for rust-protobuf 2 messages: regionstore keeps one protobuf stack (raft 0.7
//! speaks protobuf 2), so gRPC carries the same generated types the stores use in process.
//!
//! Before a frame is parsed, [`Frame::check`] may look at its bytes: a batch of raft messages
//! is refused when it holds more messages than [`MAX_MESSAGES_PER_FRAME`], since two bytes
//! on the wire (an empty message) become a few hundred in memory.

use std::marker::PhantomData;

use bytes::{Buf, BufMut};
use proto::{
    raft_serverpb::{BatchRaftMessage, Done, RaftMessage},
    Message,
};
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    Status,
};

/// The most raft messages one `BatchRaft` frame may carry (a sender batches at most
/// `RaftClientConfig::max_batch_messages`, which may not exceed it).
pub const MAX_MESSAGES_PER_FRAME: usize = 4096;

/// A message type the codec decodes, with a check of its encoded bytes before parsing.
pub trait Frame: Message {
    /// Refuses `bytes` before they are parsed (the default takes everything the size
    /// limit let through).
    fn check(_bytes: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

impl Frame for Done {}

impl Frame for RaftMessage {}

/// The client calls: nothing to check before parsing beyond the server's size limit.
macro_rules! frames {
    ($($t:ident),*) => { $(impl Frame for proto::kvrpcpb::$t {})* };
}
frames!(
    GetRequest,
    GetResponse,
    BatchGetRequest,
    BatchGetResponse,
    ScanRequest,
    ScanResponse,
    PutRequest,
    DeleteRequest,
    BatchWriteRequest,
    WriteResponse
);

/// The placement driver's calls.
macro_rules! pd_frames {
    ($($t:ident),*) => { $(impl Frame for proto::pdpb::$t {})* };
}
pd_frames!(
    GetMembersRequest,
    GetMembersResponse,
    AllocIdRequest,
    AllocIdResponse,
    BootstrapRequest,
    BootstrapResponse,
    IsBootstrappedRequest,
    IsBootstrappedResponse,
    PutStoreRequest,
    PutStoreResponse,
    GetStoreRequest,
    GetStoreResponse,
    GetAllStoresRequest,
    GetAllStoresResponse,
    GetRegionRequest,
    GetRegionByIdRequest,
    GetRegionResponse,
    RegionHeartbeatRequest,
    RegionHeartbeatResponse,
    StoreHeartbeatRequest,
    StoreHeartbeatResponse,
    AskBatchSplitRequest,
    AskBatchSplitResponse,
    ReportBatchSplitRequest,
    ReportBatchSplitResponse
);

impl Frame for BatchRaftMessage {
    fn check(bytes: &[u8]) -> Result<(), String> {
        let n = count_field(bytes, 1)?;
        if n > MAX_MESSAGES_PER_FRAME {
            return Err(format!("{n} messages in a frame, at most {MAX_MESSAGES_PER_FRAME}"));
        }
        Ok(())
    }
}

/// How many times the length-delimited field `field` occurs at the top level of `bytes`,
/// walking the tags without parsing the values.
fn count_field(bytes: &[u8], field: u32) -> Result<usize, String> {
    let mut input = protobuf::CodedInputStream::from_bytes(bytes);
    let mut n = 0;
    let bad = |e: protobuf::ProtobufError| e.to_string();
    while !input.eof().map_err(bad)? {
        let (number, wire_type) = input.read_tag_unpack().map_err(bad)?;
        if number == field && wire_type == protobuf::wire_format::WireTypeLengthDelimited {
            n += 1;
        }
        input.skip_field(wire_type).map_err(bad)?;
    }
    Ok(n)
}

/// Encodes `T` and decodes `U` with protobuf 2.
#[derive(Debug)]
pub struct ProtobufCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProtobufCodec<T, U> {
    fn default() -> Self {
        ProtobufCodec(PhantomData)
    }
}

impl<T, U> Codec for ProtobufCodec<T, U>
where
    T: Message + Send + 'static,
    U: Frame + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProtobufEncoder<T>;
    type Decoder = ProtobufDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProtobufEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtobufDecoder(PhantomData)
    }
}

/// The encoding half of [`ProtobufCodec`].
#[derive(Debug)]
pub struct ProtobufEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for ProtobufEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let bytes = item
            .write_to_bytes()
            .map_err(|e| Status::internal(format!("encoding a message: {e}")))?;
        dst.put_slice(&bytes);
        Ok(())
    }
}

/// The decoding half of [`ProtobufCodec`]. A frame that does not parse, or that
/// [`Frame::check`] refuses, is an `InvalidArgument` status: the stream ends, the receiver
/// keeps running.
#[derive(Debug)]
pub struct ProtobufDecoder<U>(PhantomData<U>);

impl<U: Frame> Decoder for ProtobufDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = src.remaining();
        let mut msg = U::new();
        let chunk = src.copy_to_bytes(len);
        U::check(&chunk).map_err(|e| Status::invalid_argument(format!("a refused frame: {e}")))?;
        msg.merge_from_bytes(&chunk)
            .map_err(|e| Status::invalid_argument(format!("a malformed message: {e}")))?;
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_counted_without_parsing_and_refused_past_the_limit() {
        let mut batch = BatchRaftMessage::new();
        batch.msgs.push(RaftMessage::new());
        batch.msgs.push(RaftMessage::new());
        let bytes = batch.write_to_bytes().unwrap();
        assert_eq!(count_field(&bytes, 1), Ok(2));
        assert_eq!(BatchRaftMessage::check(&bytes), Ok(()));

        // Empty messages: two bytes each on the wire.
        let flood: Vec<u8> = [0x0a, 0x00].repeat(MAX_MESSAGES_PER_FRAME + 1);
        assert!(BatchRaftMessage::check(&flood).unwrap_err().contains("4097 messages"));
        // A length past the end is an error, not a count.
        assert!(count_field(&[0x0a, 0xff, 0x01, 0x00], 1).is_err());
    }
}
