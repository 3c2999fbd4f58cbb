//! PortForward messages to and from what each hop of a forward moves
//! ([`Piece`]): written once for the agent, the preview proxy and the CLI.

use super::port_forward_request::Request;
use super::port_forward_response::Response;
use super::{CloseWrite, PortForwardRequest, PortForwardResponse};
use crate::wire::forward::Piece;

impl From<Piece> for PortForwardRequest {
    fn from(piece: Piece) -> Self {
        Self {
            request: Some(match piece {
                Piece::Data(data) => Request::Data(data),
                Piece::CloseWrite => Request::CloseWrite(CloseWrite {}),
            }),
        }
    }
}

impl From<Piece> for PortForwardResponse {
    fn from(piece: Piece) -> Self {
        Self {
            response: Some(match piece {
                Piece::Data(data) => Response::Data(data),
                Piece::CloseWrite => Response::ClosedWrite(CloseWrite {}),
            }),
        }
    }
}

impl PortForwardRequest {
    /// The bytes or the end this message carries; `None` for a `start` or
    /// an empty message.
    pub fn into_piece(self) -> Option<Piece> {
        match self.request? {
            Request::Data(data) => Some(Piece::Data(data)),
            Request::CloseWrite(_) => Some(Piece::CloseWrite),
            Request::Start(_) => None,
        }
    }
}

impl PortForwardResponse {
    /// The bytes or the end this message carries; `None` for `connected`
    /// or an empty message.
    pub fn into_piece(self) -> Option<Piece> {
        match self.response? {
            Response::Data(data) => Some(Piece::Data(data)),
            Response::ClosedWrite(_) => Some(Piece::CloseWrite),
            Response::Connected(_) => None,
        }
    }
}
