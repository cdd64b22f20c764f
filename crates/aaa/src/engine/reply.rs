//! Replies to the NAS: the ingress hooks, signing, the duplicate cache, session learning.

use super::*;

impl Engine {
    /// After the egress hooks: answer locally or proxy.
    pub(super) fn dispatch(
        &mut self,
        now: Instant,
        job: Box<ClientRequest>,
        out: &mut Vec<Output>,
    ) {
        match self.servers[job.server].handler {
            Handler::Local(database) => self.answer_locally(now, database, *job, out),
            Handler::Proxy(pool) => {
                let accounting = job.request.code == Code::AccountingRequest;
                self.forward(now, pool, accounting, job, out);
            }
        }
    }

    /// A reply for the NAS is ready: the ingress hooks, then signing and sending.
    pub(super) fn deliver_reply(
        &mut self,
        now: Instant,
        mut job: Box<ClientRequest>,
        mut reply: Message,
        out: &mut Vec<Output>,
    ) {
        if self.run_hook(&mut job, Direction::Ingress, Some(&mut reply)) == Verdict::Drop {
            self.client_stats[job.client].dropped_by_policy += 1;
            self.replies.forget(&job.dedup);
            return;
        }
        if let Some(handler) = self.external_handler(job.server, reply.code, Direction::Ingress) {
            self.park(now, handler, Direction::Ingress, job, Some(reply), out);
            return;
        }
        self.answer_client(&job, reply, true, out);
    }

    /// Signs `reply` for the NAS, caches it against retransmissions and sends it.
    pub(super) fn answer_client(
        &mut self,
        job: &ClientRequest,
        mut reply: Message,
        learn_session: bool,
        out: &mut Vec<Output>,
    ) {
        let client = &self.clients.all()[job.client];
        reply.identifier = job.request.identifier;
        let Some(bytes) = finalize_response(
            &mut reply,
            &job.request,
            &client.secret,
            job.had_message_authenticator && job.request.code != Code::AccountingRequest,
        ) else {
            self.client_stats[job.client].malformed += 1;
            self.replies.forget(&job.dedup);
            return;
        };
        let stats = &mut self.client_stats[job.client];
        match reply.code {
            Code::AccessAccept => stats.accepts += 1,
            Code::AccessReject => stats.rejects += 1,
            Code::AccessChallenge => stats.challenges += 1,
            Code::AccountingResponse => stats.accounting_responses += 1,
            _ => {}
        }
        if learn_session && matches!(reply.code, Code::AccessAccept | Code::AccountingResponse) {
            self.sessions
                .learn(job.client, job.from.ip(), &job.request, Some(&reply));
        }
        self.replies.answer(&job.dedup, &bytes);
        out.push(Output::Transmit(Transmit {
            socket: SocketRef::Listener(ListenerId(job.listener)),
            to: job.from,
            bytes,
        }));
    }
}

/// Removes the Proxy-State instance brasa added (and only that one).
pub(super) fn remove_proxy_state(packet: &mut Message, token: &[u8]) {
    if let Some(position) = packet
        .attributes
        .iter()
        .rposition(|a| a.typ == PROXY_STATE && a.value == token)
    {
        packet.attributes.remove_at(position);
    }
}

/// RFC 2865 §5.33: the request's Proxy-State attributes go into the reply unmodified, in order.
pub(super) fn copy_proxy_states(request: &Message, reply: &mut Message) {
    reply.copy_all(PROXY_STATE, request);
}

/// Encodes a response: Message-Authenticator (if wanted or already present) over the request's
/// authenticator, then the Response Authenticator (RFC 2865 §3, RFC 3579 §3.2). `None` when
/// the reply cannot be encoded. Shared with the shells that answer requests themselves (the
/// dynamic data services' CoA listener).
pub fn finalize_response(
    reply: &mut Message,
    request: &Message,
    secret: &[u8],
    with_message_authenticator: bool,
) -> Option<Vec<u8>> {
    let request_authenticator = &request.authenticator;
    let had = reply.remove(MESSAGE_AUTHENTICATOR) > 0;
    if had || with_message_authenticator {
        reply
            .attributes
            .insert(0, MESSAGE_AUTHENTICATOR, &[0; 16])
            .ok()?;
    }
    reply.authenticator = *request_authenticator;
    let mut bytes = reply.encode().ok()?;
    let context = reply_ma_context(
        reply.code,
        request.code == Code::StatusServer,
        request_authenticator,
    );
    auth::fill_message_authenticator(&mut bytes, &context, secret);
    auth::sign_response(&mut bytes, request_authenticator, secret);
    Some(bytes)
}
