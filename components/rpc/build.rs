//! Writes the gRPC stubs of the raft, kv and placement driver services with tonic-build's manual builder: the messages
//! are rust-protobuf 2 types carried by `crate::codec::ProtobufCodec`, so no `.proto` file is
//! compiled here and no `protoc` is needed.

use tonic_build::manual::{Builder, Method, Service};

fn main() {
    let raft = Service::builder()
        .name("Raft")
        .package("regionstore")
        .comment("Raft messages between stores.")
        .method(
            Method::builder()
                .name("batch_raft")
                .route_name("BatchRaft")
                .comment("A stream of batches of raft messages from one store to another.")
                .input_type("proto::raft_serverpb::BatchRaftMessage")
                .output_type("proto::raft_serverpb::Done")
                .codec_path("crate::codec::ProtobufCodec")
                .client_streaming()
                .build(),
        )
        .method(
            Method::builder()
                .name("snapshot")
                .route_name("Snapshot")
                .comment("The pieces of one snapshot, in order, on a stream of their own.")
                .input_type("proto::raft_serverpb::RaftMessage")
                .output_type("proto::raft_serverpb::Done")
                .codec_path("crate::codec::ProtobufCodec")
                .client_streaming()
                .build(),
        )
        .build();
    let mut kv = Service::builder()
        .name("Kv")
        .package("regionstore")
        .comment("Reads and writes of one region each, for clients.");
    for (name, route, input, output) in [
        ("get", "Get", "GetRequest", "GetResponse"),
        ("batch_get", "BatchGet", "BatchGetRequest", "BatchGetResponse"),
        ("scan", "Scan", "ScanRequest", "ScanResponse"),
        ("put", "Put", "PutRequest", "WriteResponse"),
        ("delete", "Delete", "DeleteRequest", "WriteResponse"),
        ("batch_write", "BatchWrite", "BatchWriteRequest", "WriteResponse"),
    ] {
        kv = kv.method(
            Method::builder()
                .name(name)
                .route_name(route)
                .input_type(format!("proto::kvrpcpb::{input}"))
                .output_type(format!("proto::kvrpcpb::{output}"))
                .codec_path("crate::codec::ProtobufCodec")
                .build(),
        );
    }
    let mut pd = Service::builder()
        .name("Pd")
        .package("regionstore")
        .comment("The placement driver: ids, bootstrap, stores, regions and heartbeats.");
    for (name, route, input, output) in [
        ("get_members", "GetMembers", "GetMembersRequest", "GetMembersResponse"),
        ("alloc_id", "AllocId", "AllocIdRequest", "AllocIdResponse"),
        ("bootstrap", "Bootstrap", "BootstrapRequest", "BootstrapResponse"),
        ("is_bootstrapped", "IsBootstrapped", "IsBootstrappedRequest", "IsBootstrappedResponse"),
        ("put_store", "PutStore", "PutStoreRequest", "PutStoreResponse"),
        ("get_store", "GetStore", "GetStoreRequest", "GetStoreResponse"),
        ("get_all_stores", "GetAllStores", "GetAllStoresRequest", "GetAllStoresResponse"),
        ("get_region", "GetRegion", "GetRegionRequest", "GetRegionResponse"),
        ("get_region_by_id", "GetRegionById", "GetRegionByIdRequest", "GetRegionResponse"),
        (
            "region_heartbeat",
            "RegionHeartbeat",
            "RegionHeartbeatRequest",
            "RegionHeartbeatResponse",
        ),
        ("store_heartbeat", "StoreHeartbeat", "StoreHeartbeatRequest", "StoreHeartbeatResponse"),
        ("ask_batch_split", "AskBatchSplit", "AskBatchSplitRequest", "AskBatchSplitResponse"),
        (
            "report_batch_split",
            "ReportBatchSplit",
            "ReportBatchSplitRequest",
            "ReportBatchSplitResponse",
        ),
    ] {
        pd = pd.method(
            Method::builder()
                .name(name)
                .route_name(route)
                .input_type(format!("proto::pdpb::{input}"))
                .output_type(format!("proto::pdpb::{output}"))
                .codec_path("crate::codec::ProtobufCodec")
                .build(),
        );
    }
    Builder::new().compile(&[raft, kv.build(), pd.build()]);
}
