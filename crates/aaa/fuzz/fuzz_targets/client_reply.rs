//! Arbitrary datagrams as answers to a client exchange (what a server, or anyone spoofing it,
//! sends back to the proxy or `brasa radius send`): verification must never panic, and only a
//! packet signed with the secret over the request's authenticator may be accepted.
#![no_main]

use brasa_aaa::client::{Exchange, MessageAuthenticator, Retry};
use brasa_radius::{auth, Code, Message};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn exchanges() -> &'static [Exchange] {
    static EXCHANGES: OnceLock<Vec<Exchange>> = OnceLock::new();
    EXCHANGES.get_or_init(|| {
        let now = Instant::now();
        let retry = Retry {
            timeout: Duration::from_secs(1),
            attempts: 2,
        };
        [Code::AccessRequest, Code::AccountingRequest, Code::StatusServer, Code::CoaRequest]
            .into_iter()
            .map(|code| {
                Exchange::new(
                    now,
                    Message::new(code, 7),
                    b"secret".as_slice().into(),
                    [3; 16],
                    MessageAuthenticator::First,
                    retry,
                )
                .expect("an empty request encodes")
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    for exchange in exchanges() {
        if let Ok(reply) = exchange.verify(data) {
            assert_eq!(reply.identifier, exchange.identifier());
            assert!(auth::verify_response(data, exchange.authenticator(), b"secret"));
        }
    }
});
