//! The wire protocol: frames, control messages, shared types and error codes.
//! Specified in `docs/PROTOCOL.md`.

pub mod chan;
pub mod error;
pub mod frame;
pub mod mesh;
pub mod message;
pub mod types;

pub use chan::{
    validate_capacity, validate_chan_name, ChanInfo, ChanOpened, ReplicaInfo, DEFAULT_MAX_PAYLOAD,
    MAX_CAPACITY, MAX_CHAN_NAME,
};
pub use error::ErrorCode;
pub use frame::{
    next_buffered, Frame, FrameCodec, FrameError, SignalOp, DEFAULT_MAX_FRAME, READ_BUFFER,
};
pub use mesh::{
    Claim, EventKind, MeshEvent, NodeInfo, NodeState, Placement, MAX_REPLICAS, SET_LABEL,
};
pub use message::{
    ClientMessage, Item, KeyStatus, KeyStep, LogsRequest, Reply, Request, ServerMessage,
    PROTOCOL_VERSION,
};
pub use types::*;
