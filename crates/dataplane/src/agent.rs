//! The CME-CAFE management agent (seed 004 §5.2.3, §5.3.4), sans-IO: the frame codec (2-byte
//! big-endian length, then a protobuf message) and the request handler, which configures
//! intercept filters and collects expired streams on a [`Pipeline`]. The TCP listener that
//! feeds it lives in the `brasa dataplane` shell.

use crate::cafe::intercept::{parse_any_addr, ExpiredStream};
use crate::control::{self, FilterRequest};
use crate::pipeline::Pipeline;
use brasa_proto::brasa::cafe::{
    generic_request, generic_response, ConfigureStream, ExpiredStream as ExpiredStreamMsg, Filter,
    GenericRequest, GenericResponse,
};
use prost::Message;
use std::net::IpAddr;

/// Largest message a frame can carry (the length prefix is 16 bits).
pub const MAX_FRAME_PAYLOAD: usize = u16::MAX as usize;

/// Longest `message` of a failure response: the reason stays readable, and a response that
/// echoes a request's text can never outgrow a frame.
pub const MAX_FAILURE_MESSAGE: usize = 1024;

/// A response whose encoding is longer than one frame can carry: its length cannot be written
/// in the 16-bit prefix, and a cut message would be a corrupt frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {len}-byte response does not fit one frame (at most {MAX_FRAME_PAYLOAD} bytes)")]
pub struct FrameTooLarge {
    /// Encoded length of the response.
    pub len: usize,
}

/// A frame that could not be decoded. The framing itself is intact (its length was read), so
/// the connection goes on with the next frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed CME request ({len} bytes): {reason}")]
pub struct MalformedFrame {
    /// Payload length of the frame.
    pub len: usize,
    /// What was wrong.
    pub reason: String,
}

/// Splits the next frame off the front of `input`: `None` when more bytes are needed, else the
/// number of bytes the frame took and its decoded request.
pub fn decode_frame(input: &[u8]) -> Option<(usize, Result<GenericRequest, MalformedFrame>)> {
    let prefix = input.get(..2)?;
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    let payload = input.get(2..2 + len)?;
    let request = GenericRequest::decode(payload).map_err(|err| MalformedFrame {
        len,
        reason: err.to_string(),
    });
    Some((2 + len, request))
}

/// Frames a response: length prefix and message. A response longer than
/// [`MAX_FRAME_PAYLOAD`] is refused whole (the CME would otherwise read a corrupt frame); the
/// caller answers with [`oversized_response`] instead.
pub fn encode_frame(response: &GenericResponse) -> Result<Vec<u8>, FrameTooLarge> {
    let len = response.encoded_len();
    let prefix = u16::try_from(len).map_err(|_| FrameTooLarge { len })?;
    let mut out = Vec::with_capacity(2 + len);
    out.extend_from_slice(&prefix.to_be_bytes());
    response.encode_raw(&mut out);
    Ok(out)
}

/// The failure sent in place of a response that [`encode_frame`] refused.
pub fn oversized_response(request_type: Option<i32>, error: &FrameTooLarge) -> GenericResponse {
    failure(request_type, error.to_string())
}

fn failure(kind: Option<i32>, message: impl Into<String>) -> GenericResponse {
    let mut message = message.into();
    if message.len() > MAX_FAILURE_MESSAGE {
        let mut end = MAX_FAILURE_MESSAGE - '…'.len_utf8();
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    GenericResponse {
        status: Some(generic_response::Status::CafeFailure as i32),
        message: Some(message),
        expired_streams: Vec::new(),
        r#type: kind,
    }
}

fn success(kind: generic_request::Type) -> GenericResponse {
    GenericResponse {
        status: Some(generic_response::Status::CafeSuccess as i32),
        message: None,
        expired_streams: Vec::new(),
        r#type: Some(kind as i32),
    }
}

/// Every worker serves a request on its copy of the filters; a failure on any is the answer,
/// and expired records (which one worker keeps) are joined.
impl control::Merge for GenericResponse {
    fn merge(mut self, other: Self) -> Self {
        let failed =
            |r: &GenericResponse| r.status != Some(generic_response::Status::CafeSuccess as i32);
        if failed(&self) {
            return self;
        }
        if failed(&other) {
            return other;
        }
        self.expired_streams.extend(other.expired_streams);
        self
    }
}

/// The answer to a frame that could not be decoded.
pub fn malformed_response(error: &MalformedFrame) -> GenericResponse {
    failure(None, error.to_string())
}

fn addr_field(value: Option<&str>, name: &str) -> Result<Option<IpAddr>, String> {
    match value {
        None | Some("") => Ok(None),
        Some(text) => parse_any_addr(text).map_err(|err| format!("{name}: {err}")),
    }
}

fn filter_request(configure: &ConfigureStream) -> Result<FilterRequest, String> {
    let id = configure.id.ok_or("configure.id is missing")?;
    let filter = configure.filter.clone().unwrap_or_default();
    let protocol =
        u8::try_from(filter.protocol.unwrap_or(0)).map_err(|_| "filter.protocol must be 0..255")?;
    let src_port = u16::try_from(filter.port_source.unwrap_or(0))
        .map_err(|_| "filter.port_source must be 0..65535")?;
    let dst_port = u16::try_from(filter.port_destination.unwrap_or(0))
        .map_err(|_| "filter.port_destination must be 0..65535")?;
    let keys = configure.key.as_deref().unwrap_or_default();
    if keys.is_empty() || keys.len() > crate::wire::comet::MAX_KEYS {
        return Err(format!(
            "configure.key must hold 1 to 255 forwarding keys, not {}",
            keys.len()
        ));
    }
    Ok(FilterRequest {
        id,
        timeout: configure.refresh_time.unwrap_or(0),
        src: addr_field(filter.ip_source.as_deref(), "filter.ip_source")?,
        dst: addr_field(filter.ip_destination.as_deref(), "filter.ip_destination")?,
        protocol,
        src_port,
        dst_port,
        keys: keys.iter().map(|k| format!("{k:02x}")).collect(),
        bandwidth: configure.bandwidth.unwrap_or(0),
        cos: configure.cos.clone().unwrap_or_default(),
        as_path: configure.as_path.clone(),
    })
}

fn expired_message(record: &ExpiredStream) -> ExpiredStreamMsg {
    let text = |addr: Option<IpAddr>| {
        Some(
            addr.map(|a| a.to_string())
                .unwrap_or_else(|| "0".to_string()),
        )
    };
    ExpiredStreamMsg {
        id: Some(record.id),
        filter: Some(Filter {
            ip_source: text(record.src),
            ip_destination: text(record.dst),
            protocol: Some(u32::from(record.protocol)),
            port_source: Some(u32::from(record.src_port)),
            port_destination: Some(u32::from(record.dst_port)),
        }),
        bandwidth: Some(record.bandwidth),
        cos: Some(record.cos.clone()),
        as_path: record.as_path.clone(),
        transferred_bytes: Some(record.transferred_bytes),
        duration: Some(record.duration_ms / 1000),
        transferred_packets: Some(record.packets),
    }
}

/// Serves one request. `CONFIGURE_STREAM` with the id of an existing stream replaces it (the
/// CME re-sends streams to refresh them); `COLLECT_EXPIRED_STREAMS` first expires idle filters,
/// then returns as many records as fit in one frame and keeps the rest for the next call.
pub fn handle(pipeline: &mut Pipeline, request: &GenericRequest, now_ns: u64) -> GenericResponse {
    match request.r#type.map(generic_request::Type::try_from) {
        Some(Ok(generic_request::Type::ConfigureStream)) => {
            let Some(configure) = request.configure.as_ref() else {
                return failure(request.r#type, "CONFIGURE_STREAM without configure");
            };
            let filter = match filter_request(configure) {
                Ok(filter) => filter,
                Err(message) => return failure(request.r#type, message),
            };
            // A known id is a refresh: the new configuration replaces the old one.
            let previous = pipeline
                .stage_mut::<crate::cafe::InterceptStage>()
                .and_then(|stage| stage.filters.remove(filter.id).ok());
            match control::intercept_add(pipeline, &filter, now_ns) {
                Ok(()) => success(generic_request::Type::ConfigureStream),
                Err(err) => {
                    // A refused refresh changes nothing: the old stream goes back as it was.
                    if let (Some(previous), Some(stage)) = (
                        previous,
                        pipeline.stage_mut::<crate::cafe::InterceptStage>(),
                    ) {
                        stage.filters.restore(previous);
                    }
                    failure(request.r#type, err.to_string())
                }
            }
        }
        Some(Ok(generic_request::Type::CollectExpiredStreams)) => {
            let records = match control::intercept_collect(pipeline, now_ns) {
                Ok(records) => records,
                Err(err) => return failure(request.r#type, err.to_string()),
            };
            let mut response = success(generic_request::Type::CollectExpiredStreams);
            let mut leftover = Vec::new();
            for record in records {
                if !leftover.is_empty() {
                    leftover.push(record);
                    continue;
                }
                response.expired_streams.push(expired_message(&record));
                if response.encoded_len() > MAX_FRAME_PAYLOAD {
                    response.expired_streams.pop();
                    leftover.push(record);
                }
            }
            if !leftover.is_empty() {
                if let Some(stage) = pipeline.stage_mut::<crate::cafe::InterceptStage>() {
                    stage.filters.requeue_expired(leftover);
                }
            }
            response
        }
        _ => failure(request.r#type, "unknown request type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{IpHandoff, LinkKind, Port};
    use crate::wire::MacAddr;

    fn pipeline() -> Pipeline {
        let ports = vec![Port {
            name: "eth0".into(),
            link: LinkKind::Ethernet,
            mac: MacAddr::default(),
            ip_handoff: IpHandoff::Kernel,
        }];
        Pipeline::new(ports, crate::stages::cafe_stages())
    }

    fn configure(id: u32, dst: &str, key: &[u8], refresh: u32) -> GenericRequest {
        GenericRequest {
            r#type: Some(generic_request::Type::ConfigureStream as i32),
            configure: Some(ConfigureStream {
                id: Some(id),
                filter: Some(Filter {
                    ip_source: Some("1.1.1.1".into()),
                    ip_destination: Some(dst.into()),
                    protocol: Some(6),
                    port_source: Some(80),
                    port_destination: Some(0),
                }),
                bandwidth: Some(1000),
                cos: Some("PR".into()),
                key: Some(key.to_vec()),
                refresh_time: Some(refresh),
                as_path: vec![1, 2, 3],
            }),
        }
    }

    fn frame(request: &GenericRequest) -> Vec<u8> {
        let mut out = (request.encoded_len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&request.encode_to_vec());
        out
    }

    #[test]
    fn frames_are_split_only_when_complete() {
        let bytes = frame(&configure(1, "2.2.2.2", &[1, 2, 3], 10));
        assert!(decode_frame(&bytes[..1]).is_none());
        assert!(decode_frame(&bytes[..bytes.len() - 1]).is_none());
        let (used, request) = decode_frame(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(request.unwrap(), configure(1, "2.2.2.2", &[1, 2, 3], 10));
        let (used, bad) = decode_frame(&[0, 2, 0xff, 0xff]).unwrap();
        assert_eq!(used, 4);
        assert!(bad.is_err());
    }

    #[test]
    fn a_response_over_one_frame_is_refused_not_cut() {
        let response = |message_len: usize| GenericResponse {
            status: Some(generic_response::Status::CafeFailure as i32),
            message: Some("x".repeat(message_len)),
            expired_streams: Vec::new(),
            r#type: None,
        };
        // Tag, 3-byte varint length, message and the status field: 6 bytes of overhead.
        let largest = response(MAX_FRAME_PAYLOAD - 6);
        assert_eq!(largest.encoded_len(), MAX_FRAME_PAYLOAD);
        let frame = encode_frame(&largest).unwrap();
        assert_eq!(&frame[..2], &[0xff, 0xff]);
        assert_eq!(GenericResponse::decode(&frame[2..]).unwrap(), largest);
        let too_large = response(70_000);
        let err = encode_frame(&too_large).unwrap_err();
        assert_eq!(err.len, too_large.encoded_len());
        let fallback = encode_frame(&oversized_response(Some(1), &err)).unwrap();
        let decoded = GenericResponse::decode(&fallback[2..]).unwrap();
        assert_eq!(decoded.status, Some(1));
        assert!(decoded.message.unwrap().contains("does not fit one frame"));
    }

    #[test]
    fn a_failure_echoing_a_huge_field_still_fits_one_frame() {
        // The error quotes the address with each control character written as `\u{1}`:
        // 12 000 bytes in the request become a 72 000-byte reason, more than one frame holds.
        let mut request = configure(1, "2.2.2.2", &[1], 10);
        request
            .configure
            .as_mut()
            .unwrap()
            .filter
            .as_mut()
            .unwrap()
            .ip_source = Some("\u{1}".repeat(12_000));
        assert!(request.encoded_len() <= MAX_FRAME_PAYLOAD);
        let response = handle(&mut pipeline(), &request, 0);
        assert_eq!(response.status, Some(1));
        let frame = encode_frame(&response).unwrap();
        let decoded = GenericResponse::decode(&frame[2..]).unwrap();
        let message = decoded.message.unwrap();
        assert!(
            message.starts_with("filter.ip_source: invalid IP address"),
            "{message:.80}"
        );
        assert!(message.len() <= MAX_FAILURE_MESSAGE && message.ends_with('…'));
    }

    #[test]
    fn configure_then_collect_after_expiry() {
        let mut pipeline = pipeline();
        let second = 1_000_000_000;
        // The Appendix B pattern: streams with one tuple, different ids and paths.
        for id in 1..=10 {
            let response = handle(
                &mut pipeline,
                &configure(id, "2.2.2.2", &[1, 2, id as u8], 10),
                0,
            );
            assert_eq!(response.status, Some(0), "{:?}", response.message);
        }
        for id in 2..=10 {
            control::intercept_remove(&mut pipeline, id).unwrap();
        }
        let refreshed = handle(
            &mut pipeline,
            &configure(1, "2.2.2.2", &[9], 10),
            5 * second,
        );
        assert_eq!(refreshed.status, Some(0));
        let collect = GenericRequest {
            r#type: Some(generic_request::Type::CollectExpiredStreams as i32),
            configure: None,
        };
        assert!(handle(&mut pipeline, &collect, 14 * second)
            .expired_streams
            .is_empty());
        let response = handle(&mut pipeline, &collect, 15 * second);
        assert_eq!(response.expired_streams.len(), 1);
        let record = &response.expired_streams[0];
        assert_eq!(
            (record.id, record.bandwidth, record.cos.as_deref()),
            (Some(1), Some(1000), Some("PR"))
        );
        assert_eq!(record.as_path, vec![1, 2, 3]);
        assert_eq!(
            record.filter.as_ref().unwrap().ip_destination.as_deref(),
            Some("2.2.2.2")
        );
    }

    #[test]
    fn refused_refresh_keeps_the_old_stream() {
        let mut pipeline = pipeline();
        assert_eq!(
            handle(&mut pipeline, &configure(1, "2.2.2.2", &[7], 10), 0).status,
            Some(0)
        );
        let refused = handle(&mut pipeline, &configure(1, "fd00::2", &[8], 10), 0);
        assert_eq!(refused.status, Some(1));
        assert!(refused.message.unwrap().contains("same family"));
        let list = control::intercept_list(&mut pipeline).unwrap();
        assert_eq!(
            (list.len(), list[0].keys.as_str(), list[0].dst),
            (1, "07", Some("2.2.2.2".parse().unwrap()))
        );
    }

    #[test]
    fn invalid_requests_fail_without_changes() {
        let mut pipeline = pipeline();
        let mut bad_port = configure(1, "2.2.2.2", &[1], 10);
        bad_port
            .configure
            .as_mut()
            .unwrap()
            .filter
            .as_mut()
            .unwrap()
            .port_source = Some(70000);
        assert_eq!(handle(&mut pipeline, &bad_port, 0).status, Some(1));
        assert_eq!(
            handle(&mut pipeline, &configure(1, "2.2.2", &[1], 10), 0).status,
            Some(1)
        );
        assert_eq!(
            handle(&mut pipeline, &configure(1, "2.2.2.2", &[], 10), 0).status,
            Some(1)
        );
        assert_eq!(
            handle(
                &mut pipeline,
                &GenericRequest {
                    r#type: Some(99),
                    configure: None
                },
                0
            )
            .status,
            Some(1)
        );
        assert!(control::intercept_list(&mut pipeline).unwrap().is_empty());
    }
}
