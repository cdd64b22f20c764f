//! Requests from NASes: client lookup, decoding, authenticator and Message-Authenticator
//! checks, duplicate detection, then the egress hooks.

use super::*;

impl Engine {
    pub(super) fn handle_nas_request(
        &mut self,
        now: Instant,
        listener: usize,
        kind: ListenerKind,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        let Some(client_index) = self.clients.lookup(from.ip()) else {
            self.unknown_client += 1;
            tracing::debug!(%from, "request from unknown client dropped");
            return;
        };
        let Some(client) = self.clients.get(client_index) else {
            return;
        };
        let stats = &mut self.client_stats[client_index];
        let request = match Message::decode(bytes) {
            Ok(packet) => packet,
            Err(err) => {
                stats.malformed += 1;
                tracing::debug!(client = %client.name, %err, "malformed request dropped");
                return;
            }
        };
        let acceptable = match kind {
            ListenerKind::Auth => matches!(request.code, Code::AccessRequest | Code::StatusServer),
            ListenerKind::Acct => {
                matches!(request.code, Code::AccountingRequest | Code::StatusServer)
            }
            ListenerKind::Coa => false,
        };
        if !acceptable {
            stats.malformed += 1;
            tracing::debug!(client = %client.name, code = %request.code, "unexpected code on this port");
            return;
        }
        let ma = auth::check_message_authenticator(
            bytes,
            &auth::message_authenticator_context(request.code, &request.authenticator),
            &client.secret,
        );
        let authentic = match request.code {
            Code::AccountingRequest => {
                auth::verify_request(bytes, &client.secret)
                    && !matches!(
                        ma,
                        MessageAuthenticator::Invalid | MessageAuthenticator::Malformed
                    )
            }
            // RFC 5997 §3: Status-Server must carry a Message-Authenticator.
            Code::StatusServer => ma == MessageAuthenticator::Valid,
            _ => match ma {
                MessageAuthenticator::Valid => true,
                MessageAuthenticator::Absent => {
                    // RFC 3579 §3.2: EAP requires it; Blast-RADIUS: the client may require it.
                    !client.require_message_authenticator && request.get(EAP_MESSAGE).is_none()
                }
                MessageAuthenticator::Invalid | MessageAuthenticator::Malformed => false,
            },
        };
        if !authentic {
            stats.bad_authenticator += 1;
            tracing::debug!(client = %client.name, code = %request.code, "bad authenticator, dropped");
            return;
        }
        let Some(dedup) = self.admit(now, listener, from, &request, out) else {
            self.client_stats[client_index].retransmissions += 1;
            return;
        };
        self.client_stats[client_index].requests += 1;
        let server = self.listeners[listener].server;
        self.server_stats[server].requests += 1;
        let had_message_authenticator = ma == MessageAuthenticator::Valid;
        let mut job = ClientRequest {
            listener,
            from,
            client: client_index,
            server,
            request,
            had_message_authenticator,
            dedup,
            tried: Vec::new(),
        };
        if job.request.code == Code::StatusServer {
            let code = match kind {
                ListenerKind::Acct => Code::AccountingResponse,
                _ => Code::AccessAccept,
            };
            let reply = Message::new(code, job.request.identifier);
            job.had_message_authenticator = true;
            self.answer_client(&job, reply, false, out);
            return;
        }
        if self.run_hook(&mut job, Direction::Egress, None) == Verdict::Drop {
            self.client_stats[client_index].dropped_by_policy += 1;
            self.replies.forget(&job.dedup);
            return;
        }
        let job = Box::new(job);
        if let Some(handler) = self.external_handler(server, job.request.code, Direction::Egress) {
            self.park(now, handler, Direction::Egress, job, None, out);
            return;
        }
        self.dispatch(now, job, out);
    }

    /// Duplicate detection for a request on `listener`: its key when it is new; `None` when it
    /// is a retransmission, which is absorbed (still in progress) or answered again from the
    /// reply cache.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        listener: usize,
        from: SocketAddr,
        request: &Message,
        out: &mut Vec<Output>,
    ) -> Option<RequestKey> {
        let key = RequestKey {
            listener,
            from,
            code: request.code.into(),
            identifier: request.identifier,
            authenticator: request.authenticator,
        };
        match self.replies.check(now, &key) {
            Seen::New => Some(key),
            Seen::InProgress => None,
            Seen::Answered(reply) => {
                out.push(Output::Transmit(Transmit {
                    socket: SocketRef::Listener(ListenerId(listener)),
                    to: from,
                    bytes: reply.to_vec(),
                }));
                None
            }
        }
    }
}
