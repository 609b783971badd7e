//! The hello exchange that opens every connection: the client says which protocol it speaks,
//! the daemon answers with its own hello (or a refusal); anything else is not a circuitd.

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::{decode_message, encode};
use crate::error::Error;
use crate::proto::{ClientMessage, Frame, FrameCodec, ServerMessage, PROTOCOL_VERSION};

/// What the daemon said about itself in its hello.
#[derive(Debug, Clone)]
pub(crate) struct Hello {
    /// The daemon's node name.
    pub node: String,
    /// The daemon's version.
    pub daemon_version: String,
    /// Random per daemon start, so a restart can be told apart.
    pub instance: u64,
}

/// Sends the client's hello and reads the daemon's. A daemon speaking another protocol version
/// is refused; a peer answering with anything but a hello is not a circuitd (`peer` names it).
pub(super) async fn exchange<R, W>(
    reader: &mut FramedRead<R, FrameCodec>,
    writer: &mut FramedWrite<W, FrameCodec>,
    peer: &str,
) -> Result<Hello, Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let hello = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        client: format!("circuit-sdk/{}", env!("CARGO_PKG_VERSION")),
    };
    writer.send(encode(&hello)?).await?;
    let not_circuit = |what: String| Error::NoHandshake {
        target: peer.to_string(),
        reason: format!("it answered with something else ({what})"),
    };
    match reader.next().await {
        None => Err(Error::Disconnected),
        Some(Err(e)) => Err(not_circuit(e.to_string())),
        Some(Ok(Frame::Control(body))) => match decode_message(&body) {
            Ok(ServerMessage::Hello {
                version,
                node,
                daemon_version,
                instance,
            }) => {
                if version != PROTOCOL_VERSION {
                    return Err(Error::Protocol(format!(
                        "circuitd {daemon_version} speaks protocol {version}, \
                         this client speaks {PROTOCOL_VERSION}"
                    )));
                }
                Ok(Hello {
                    node,
                    daemon_version,
                    instance,
                })
            }
            Ok(ServerMessage::Error { code, message, .. }) => Err(Error::Remote { code, message }),
            Ok(other) => Err(not_circuit(format!("expected hello, got {other:?}"))),
            Err(e) => Err(not_circuit(e.to_string())),
        },
        Some(Ok(other)) => Err(not_circuit(format!("expected hello, got {other:?}"))),
    }
}
