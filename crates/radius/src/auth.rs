//! Authenticators and attribute hiding: RFC 2865 §3 and §5.2, RFC 2866 §3, RFC 5176 §2.3,
//! RFC 2868 §3.5, RFC 3579 §3.2, and the Ascend-Send-Secret scheme FreeRADIUS calls `encrypt=3`.
//!
//! Functions take the encoded packet as bytes so that signing is the last step before sending
//! and verification the first step after receiving. None of them panics on short input.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

use crate::attr::MESSAGE_AUTHENTICATOR;
use crate::code::Code;
use crate::error::CryptoError;
use crate::wire::{AttributeIter, HEADER_LEN};

/// The packet octets covered by Length, or `None` if the header is unusable.
fn packet_span(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < HEADER_LEN {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if length < HEADER_LEN || length > bytes.len() {
        return None;
    }
    Some(length)
}

/// MD5(Code+ID+Length + `authenticator` + Attributes + secret).
fn packet_digest(packet: &[u8], authenticator: &[u8; 16], secret: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(&packet[..4]);
    md5.update(authenticator);
    md5.update(&packet[HEADER_LEN..]);
    md5.update(secret);
    md5.finalize().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Signs an Accounting-Request, CoA-Request or Disconnect-Request: the authenticator becomes
/// MD5 of the packet with a zero authenticator, followed by the secret. Fill a
/// Message-Authenticator (with a zero authenticator) before calling this.
pub fn sign_request(bytes: &mut [u8], secret: &[u8]) {
    let Some(len) = packet_span(bytes) else {
        return;
    };
    let digest = packet_digest(&bytes[..len], &[0; 16], secret);
    bytes[4..HEADER_LEN].copy_from_slice(&digest);
}

/// Verifies the authenticator of an Accounting-Request, CoA-Request or Disconnect-Request.
pub fn verify_request(bytes: &[u8], secret: &[u8]) -> bool {
    let Some(len) = packet_span(bytes) else {
        return false;
    };
    let digest = packet_digest(&bytes[..len], &[0; 16], secret);
    constant_time_eq(&digest, &bytes[4..HEADER_LEN])
}

/// Signs a response: Response Authenticator = MD5(Code+ID+Length+RequestAuth+Attributes+Secret).
/// Fill a Message-Authenticator (with the request authenticator) before calling this.
pub fn sign_response(bytes: &mut [u8], request_authenticator: &[u8; 16], secret: &[u8]) {
    let Some(len) = packet_span(bytes) else {
        return;
    };
    let digest = packet_digest(&bytes[..len], request_authenticator, secret);
    bytes[4..HEADER_LEN].copy_from_slice(&digest);
}

/// Verifies a response's authenticator against the request it answers.
pub fn verify_response(bytes: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> bool {
    let Some(len) = packet_span(bytes) else {
        return false;
    };
    let digest = packet_digest(&bytes[..len], request_authenticator, secret);
    constant_time_eq(&digest, &bytes[4..HEADER_LEN])
}

/// Offsets (from the packet start) of the values of every Message-Authenticator attribute.
fn message_authenticator_positions(packet: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut offset = HEADER_LEN;
    for attr in AttributeIter::new(&packet[HEADER_LEN..]) {
        if attr.typ == MESSAGE_AUTHENTICATOR {
            out.push((offset + 2, attr.value.len()));
        }
        offset += 2 + attr.value.len();
    }
    out
}

fn message_authenticator_hmac(
    packet: &[u8],
    value_at: usize,
    authenticator: &[u8; 16],
    secret: &[u8],
) -> [u8; 16] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(&packet[..4]);
    mac.update(authenticator);
    mac.update(&packet[HEADER_LEN..value_at]);
    mac.update(&[0; 16]);
    mac.update(&packet[value_at + 16..]);
    mac.finalize().into_bytes().into()
}

/// Computes and writes the Message-Authenticator value: HMAC-MD5 keyed with the secret over the
/// packet with `authenticator` in the header position and the attribute's value zeroed. Use the
/// packet's own Request Authenticator for Access-Request/Status-Server, zeros for
/// Accounting/CoA/Disconnect requests (sign afterwards), and the request's authenticator for
/// responses (sign afterwards). Returns false (and writes nothing) if the packet carries no
/// 16-octet Message-Authenticator.
pub fn fill_message_authenticator(
    bytes: &mut [u8],
    authenticator: &[u8; 16],
    secret: &[u8],
) -> bool {
    let Some(len) = packet_span(bytes) else {
        return false;
    };
    let positions = message_authenticator_positions(&bytes[..len]);
    let Some(&(at, 16)) = positions.first() else {
        return false;
    };
    let mac = message_authenticator_hmac(&bytes[..len], at, authenticator, secret);
    bytes[at..at + 16].copy_from_slice(&mac);
    true
}

/// The authenticator to put in the header position when computing a Message-Authenticator
/// for a packet of `code`, as FreeRADIUS does (RFC 3579 §3.2, RFC 5176 §3.2):
/// Access-Request and Status-Server use their own Request Authenticator (`authenticator`);
/// Accounting-Request, CoA-Request, Disconnect-Request and Accounting-Response use zeros;
/// other responses use the authenticator of the request they answer (`authenticator`).
pub fn message_authenticator_context(code: Code, authenticator: &[u8; 16]) -> [u8; 16] {
    match code {
        Code::AccountingRequest
        | Code::AccountingResponse
        | Code::CoaRequest
        | Code::DisconnectRequest => [0; 16],
        _ => *authenticator,
    }
}

/// Outcome of checking a packet's Message-Authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageAuthenticator {
    /// The packet has no Message-Authenticator.
    Absent,
    /// Present and correct.
    Valid,
    /// Present with a wrong HMAC.
    Invalid,
    /// Present but not 16 octets, repeated, or the packet is unusable.
    Malformed,
}

/// Checks the Message-Authenticator with `authenticator` in the header position (see
/// [`fill_message_authenticator`] for which one).
pub fn check_message_authenticator(
    bytes: &[u8],
    authenticator: &[u8; 16],
    secret: &[u8],
) -> MessageAuthenticator {
    let Some(len) = packet_span(bytes) else {
        return MessageAuthenticator::Malformed;
    };
    let packet = &bytes[..len];
    match message_authenticator_positions(packet).as_slice() {
        [] => MessageAuthenticator::Absent,
        [(at, 16)] => {
            let mac = message_authenticator_hmac(packet, *at, authenticator, secret);
            if constant_time_eq(&mac, &packet[*at..*at + 16]) {
                MessageAuthenticator::Valid
            } else {
                MessageAuthenticator::Invalid
            }
        }
        _ => MessageAuthenticator::Malformed,
    }
}

/// Longest User-Password RFC 2865 §5.2 allows.
pub const MAX_USER_PASSWORD_LEN: usize = 128;

fn md5_two(a: &[u8], b: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(a);
    md5.update(b);
    md5.finalize().into()
}

fn md5_three(a: &[u8], b: &[u8], c: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(a);
    md5.update(b);
    md5.update(c);
    md5.finalize().into()
}

/// XORs `data` (a multiple of 16 octets) in place with the RFC 2865 §5.2 key stream, whose first
/// block is `first` and whose later blocks are MD5(secret + previous ciphertext block).
fn chain_encrypt(data: &mut [u8], secret: &[u8], first: [u8; 16]) {
    let mut key = first;
    for block in data.chunks_mut(16) {
        for (b, k) in block.iter_mut().zip(key) {
            *b ^= k;
        }
        key = md5_two(secret, block);
    }
}

fn chain_decrypt(data: &mut [u8], secret: &[u8], first: [u8; 16]) {
    let mut key = first;
    for block in data.chunks_mut(16) {
        let next = md5_two(secret, block);
        for (b, k) in block.iter_mut().zip(key) {
            *b ^= k;
        }
        key = next;
    }
}

/// Hides a User-Password (RFC 2865 §5.2, `encrypt=1`): NUL-padded to a multiple of 16 (at least
/// 16), truncated to 128 octets.
pub fn hide_user_password(password: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Vec<u8> {
    let password = &password[..password.len().min(MAX_USER_PASSWORD_LEN)];
    let padded = password.len().div_ceil(16).max(1) * 16;
    let mut out = password.to_vec();
    out.resize(padded, 0);
    chain_encrypt(&mut out, secret, md5_two(secret, authenticator));
    out
}

/// Reveals a hidden User-Password, stripping the NUL padding.
pub fn reveal_user_password(
    hidden: &[u8],
    secret: &[u8],
    authenticator: &[u8; 16],
) -> Result<Vec<u8>, CryptoError> {
    if hidden.is_empty() || !hidden.len().is_multiple_of(16) || hidden.len() > MAX_USER_PASSWORD_LEN
    {
        return Err(CryptoError::BadLength {
            len: hidden.len(),
            expected: "a multiple of 16 between 16 and 128",
        });
    }
    let mut out = hidden.to_vec();
    chain_decrypt(&mut out, secret, md5_two(secret, authenticator));
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

/// Longest Tunnel-Password plaintext that fits one attribute with its tag, salt and length octet.
pub const MAX_TUNNEL_PASSWORD_LEN: usize = 239;

/// Hides a Tunnel-Password (RFC 2868 §3.5, `encrypt=2`; also MS-MPPE keys): returns
/// salt (2 octets, high bit forced on) followed by the ciphertext of length-octet + password +
/// NUL padding. The tag octet, if any, is the caller's. Passwords longer than 239 octets are
/// truncated.
pub fn hide_tunnel_password(
    password: &[u8],
    secret: &[u8],
    authenticator: &[u8; 16],
    salt: u16,
) -> Vec<u8> {
    let password = &password[..password.len().min(MAX_TUNNEL_PASSWORD_LEN)];
    let salt = (salt | 0x8000).to_be_bytes();
    let mut plain = Vec::with_capacity(2 + 16 * (password.len() / 16 + 1));
    plain.push(password.len() as u8);
    plain.extend_from_slice(password);
    plain.resize(plain.len().div_ceil(16) * 16, 0);
    chain_encrypt(&mut plain, secret, md5_three(secret, authenticator, &salt));
    let mut out = salt.to_vec();
    out.extend_from_slice(&plain);
    out
}

/// Reveals a Tunnel-Password value (salt + ciphertext, tag already removed).
pub fn reveal_tunnel_password(
    value: &[u8],
    secret: &[u8],
    authenticator: &[u8; 16],
) -> Result<Vec<u8>, CryptoError> {
    if value.len() < 18 || !(value.len() - 2).is_multiple_of(16) {
        return Err(CryptoError::BadLength {
            len: value.len(),
            expected: "2 salt octets plus a non-empty multiple of 16",
        });
    }
    let salt = u16::from_be_bytes([value[0], value[1]]);
    if salt & 0x8000 == 0 {
        return Err(CryptoError::BadSalt { salt });
    }
    let mut plain = value[2..].to_vec();
    chain_decrypt(
        &mut plain,
        secret,
        md5_three(secret, authenticator, &value[..2]),
    );
    let claimed = usize::from(plain[0]);
    if claimed > plain.len() - 1 {
        return Err(CryptoError::BadInnerLength {
            claimed,
            available: plain.len() - 1,
        });
    }
    Ok(plain[1..1 + claimed].to_vec())
}

/// Hides a value the Ascend way (`encrypt=3`, Ascend-Send-Secret): MD5(authenticator + secret)
/// XOR the value NUL-padded to 16 octets. Values longer than 16 octets are truncated.
pub fn hide_ascend_secret(value: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Vec<u8> {
    let mut out = md5_two(authenticator, secret).to_vec();
    for (o, v) in out.iter_mut().zip(value) {
        *o ^= v;
    }
    out
}

/// Reveals an `encrypt=3` value, cutting it at the first NUL as FreeRADIUS does.
pub fn reveal_ascend_secret(
    hidden: &[u8],
    secret: &[u8],
    authenticator: &[u8; 16],
) -> Result<Vec<u8>, CryptoError> {
    if hidden.len() != 16 {
        return Err(CryptoError::BadLength {
            len: hidden.len(),
            expected: "exactly 16",
        });
    }
    let mut out = hide_ascend_secret(hidden, secret, authenticator);
    if let Some(nul) = out.iter().position(|&b| b == 0) {
        out.truncate(nul);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_password_round_trip_and_length() {
        let ra = [7u8; 16];
        let hidden = hide_user_password(b"0123456789abcdefX", b"s", &ra);
        assert_eq!(hidden.len(), 32);
        assert_eq!(
            reveal_user_password(&hidden, b"s", &ra).unwrap(),
            b"0123456789abcdefX"
        );
        assert!(reveal_user_password(&hidden[..31], b"s", &ra).is_err());
        assert_eq!(hide_user_password(b"", b"s", &ra).len(), 16);
    }

    #[test]
    fn tunnel_password_round_trip_and_errors() {
        let ra = [3u8; 16];
        let hidden = hide_tunnel_password(b"tunnel-secret", b"s", &ra, 0x0123);
        assert_eq!(hidden[0] & 0x80, 0x80);
        assert_eq!(hidden.len(), 2 + 16);
        assert_eq!(
            reveal_tunnel_password(&hidden, b"s", &ra).unwrap(),
            b"tunnel-secret"
        );
        let mut bad_salt = hidden.clone();
        bad_salt[0] &= 0x7f;
        assert!(matches!(
            reveal_tunnel_password(&bad_salt, b"s", &ra),
            Err(CryptoError::BadSalt { .. })
        ));
        // With the wrong secret the length octet is garbage: usually caught, never a panic.
        let _ = reveal_tunnel_password(&hidden, b"wrong", &ra);
    }

    #[test]
    fn ascend_secret_round_trip() {
        let ra = [9u8; 16];
        let hidden = hide_ascend_secret(b"ascend", b"s", &ra);
        assert_eq!(hidden.len(), 16);
        assert_eq!(reveal_ascend_secret(&hidden, b"s", &ra).unwrap(), b"ascend");
    }

    #[test]
    fn short_buffers_are_refused_not_panicking() {
        let mut short = [0u8; 10];
        sign_request(&mut short, b"s");
        assert!(!verify_request(&short, b"s"));
        assert!(!fill_message_authenticator(&mut short, &[0; 16], b"s"));
        assert_eq!(
            check_message_authenticator(&short, &[0; 16], b"s"),
            MessageAuthenticator::Malformed
        );
    }
}
