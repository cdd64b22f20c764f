//! Local answering: authentication from a [`LocalDatabase`] (PAP and CHAP) and accounting
//! records for the append-only log.

use crate::config::{LocalDatabase, LocalUser};
use brasa_radius::attr::{CHAP_CHALLENGE, CHAP_PASSWORD, USER_NAME, USER_PASSWORD};
use brasa_radius::{Dictionary, Message, PlainValue};
use md5::{Digest, Md5};

/// The outcome of a local authentication.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Credentials and check items matched.
    Accept,
    /// Why the user was rejected (for the log, never sent to the NAS).
    Reject(&'static str),
}

/// Authenticates `request` (from a client with `secret`) against `database`.
pub fn authenticate<'db>(
    database: &'db LocalDatabase,
    dictionary: &Dictionary,
    request: &Message,
    secret: &[u8],
) -> (AuthOutcome, Option<&'db LocalUser>) {
    let Some(name) = request.get(USER_NAME) else {
        return (AuthOutcome::Reject("no User-Name"), None);
    };
    // As in a FreeRADIUS users file, a `DEFAULT` entry applies to every other User-Name.
    let Some(user) = std::str::from_utf8(name)
        .ok()
        .and_then(|name| database.users.get(name))
        .or_else(|| database.users.get("DEFAULT"))
    else {
        return (AuthOutcome::Reject("unknown user"), None);
    };
    if let Some(expected) = &user.password {
        let verdict = if let Some(hidden) = request.get(USER_PASSWORD) {
            match brasa_radius::auth::reveal_user_password(hidden, secret, &request.authenticator) {
                Ok(given) if constant_time_eq(&given, expected) => None,
                Ok(_) => Some("wrong password"),
                Err(_) => Some("undecodable User-Password"),
            }
        } else if let Some(chap) = request.get(CHAP_PASSWORD) {
            let challenge = request
                .get(CHAP_CHALLENGE)
                .unwrap_or(&request.authenticator[..]);
            if chap_matches(chap, expected, challenge) {
                None
            } else {
                Some("wrong CHAP response")
            }
        } else {
            Some("no User-Password or CHAP-Password")
        };
        if let Some(reason) = verdict {
            return (AuthOutcome::Reject(reason), Some(user));
        }
    }
    if !user.check.is_empty() {
        let present = dictionary.decode_pairs(request, Some((secret, &request.authenticator)));
        let all_match = user.check.iter().all(|wanted| {
            present
                .iter()
                .any(|have| have.attr == wanted.attr && have.value == wanted.value)
        });
        if !all_match {
            return (AuthOutcome::Reject("check items do not match"), Some(user));
        }
    }
    (AuthOutcome::Accept, Some(user))
}

/// CHAP (RFC 1994 via RFC 2865 §5.3): CHAP-Password is the CHAP ident followed by
/// MD5(ident ‖ password ‖ challenge).
fn chap_matches(chap_password: &[u8], password: &[u8], challenge: &[u8]) -> bool {
    let [ident, response @ ..] = chap_password else {
        return false;
    };
    if response.len() != 16 {
        return false;
    }
    let mut hasher = Md5::new();
    hasher.update([*ident]);
    hasher.update(password);
    hasher.update(challenge);
    constant_time_eq(&hasher.finalize(), response)
}

/// Compares secrets without a data-dependent early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One accounting request as the JSON object written to the log (the shell adds the time).
///
/// `attributes` maps each attribute name (`Name:tag` for tagged ones) to its plain value
/// ([`brasa_radius::Pair::plain_value`]): a JSON string or number, or an array of them, in wire
/// order, when the attribute occurs more than once.
pub fn accounting_record(
    dictionary: &Dictionary,
    request: &Message,
    client: &str,
    from: std::net::SocketAddr,
) -> serde_json::Map<String, serde_json::Value> {
    let mut attributes = serde_json::Map::new();
    for pair in dictionary.decode_pairs(request, None) {
        let value = match pair.plain_value(dictionary) {
            PlainValue::Text(text) => serde_json::Value::from(text),
            PlainValue::Unsigned(n) => serde_json::Value::from(n),
            PlainValue::Signed(n) => serde_json::Value::from(n),
        };
        let name = match pair.tag {
            Some(tag) => format!("{}:{tag}", pair.name),
            None => pair.name.clone(),
        };
        match attributes.get_mut(&name) {
            // Repeated attributes (several Class values, say) become arrays, in wire order.
            Some(serde_json::Value::Array(values)) => values.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = serde_json::Value::Array(vec![first, value]);
            }
            None => {
                attributes.insert(name, value);
            }
        }
    }
    let mut record = serde_json::Map::new();
    record.insert("client".into(), client.into());
    record.insert("nas_address".into(), from.to_string().into());
    record.insert("identifier".into(), request.identifier.into());
    record.insert("attributes".into(), attributes.into());
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_entry_applies_to_unlisted_users_only() {
        let dictionary = Dictionary::builtin();
        let mut database = LocalDatabase::default();
        let user = |password: &[u8]| LocalUser {
            password: Some(password.to_vec()),
            ..LocalUser::default()
        };
        database.users.insert("alice".into(), user(b"wonderland"));
        database.users.insert("DEFAULT".into(), user(b"secret"));
        let request = |name: &str, password: &[u8]| {
            let mut packet = Message::new(brasa_radius::Code::AccessRequest, 1);
            packet.add(USER_NAME, name.as_bytes()).unwrap();
            let hidden =
                brasa_radius::auth::hide_user_password(password, b"s", &packet.authenticator);
            packet.add(USER_PASSWORD, hidden).unwrap();
            packet
        };
        let outcome = |name: &str, password: &[u8]| {
            authenticate(&database, &dictionary, &request(name, password), b"s").0
        };
        assert_eq!(outcome("bob", b"secret"), AuthOutcome::Accept);
        assert_eq!(outcome("alice", b"wonderland"), AuthOutcome::Accept);
        assert_eq!(
            outcome("alice", b"secret"),
            AuthOutcome::Reject("wrong password")
        );
    }

    #[test]
    fn accounting_records_carry_plain_json_values() {
        let dictionary = Dictionary::builtin();
        let mut request = Message::new(brasa_radius::Code::AccountingRequest, 4);
        let text = "User-Name = \"alice\", Acct-Status-Type = Start, Acct-Session-Id = \"sess-42\",
            Acct-Input-Octets = 1234, Framed-IP-Address = 192.0.2.7, Class = 0x0102,
            Class = 0x0304, Event-Timestamp = 1700000000, Tunnel-Type:1 = VLAN";
        for pair in dictionary.parse_pairs(text).unwrap() {
            dictionary
                .add_pair(&mut request, &pair, b"s", &[0; 16])
                .unwrap();
        }
        let from = "127.0.0.1:1813".parse().unwrap();
        let record = accounting_record(&dictionary, &request, "nas-1", from);
        assert_eq!(
            serde_json::Value::Object(record["attributes"].as_object().unwrap().clone()),
            serde_json::json!({
                "User-Name": "alice",
                "Acct-Status-Type": "Start",
                "Acct-Session-Id": "sess-42",
                "Acct-Input-Octets": 1234,
                "Framed-IP-Address": "192.0.2.7",
                "Class": ["0x0102", "0x0304"],
                "Event-Timestamp": 1700000000,
                "Tunnel-Type:1": "VLAN",
            })
        );
        assert_eq!(record["client"], "nas-1");
        assert_eq!(record["identifier"], 4);
    }

    #[test]
    fn chap_response_is_checked() {
        let mut hasher = Md5::new();
        hasher.update([7u8]);
        hasher.update(b"pw");
        hasher.update(b"challenge-bytes!");
        let mut chap = vec![7u8];
        chap.extend_from_slice(&hasher.finalize());
        assert!(chap_matches(&chap, b"pw", b"challenge-bytes!"));
        assert!(!chap_matches(&chap, b"px", b"challenge-bytes!"));
        assert!(!chap_matches(&chap[..10], b"pw", b"challenge-bytes!"));
        assert!(!chap_matches(&[], b"pw", b"x"));
    }
}
