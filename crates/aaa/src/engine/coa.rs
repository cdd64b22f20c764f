//! CoA and Disconnect requests from the AAA servers, relayed to the NAS that owns the session
//! (RFC 5176).

use super::*;

impl Engine {
    pub(super) fn handle_coa_request(
        &mut self,
        now: Instant,
        listener: usize,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        let source = crate::clients::canonical(from.ip());
        let Some(aaa) = self
            .pools
            .iter()
            .flat_map(|p| p.auth.iter().chain(&p.acct))
            .find(|u| crate::clients::canonical(u.config.address.ip()) == source)
            .map(|u| (u.config.name.clone(), u.config.secret.clone()))
        else {
            self.unknown_client += 1;
            tracing::debug!(%from, "CoA from an address that is no upstream server dropped");
            return;
        };
        let (aaa_name, secret) = aaa;
        let Ok(request) = Message::decode(bytes) else {
            tracing::debug!(%from, "malformed CoA request dropped");
            return;
        };
        if !matches!(request.code, Code::CoaRequest | Code::DisconnectRequest) {
            return;
        }
        let ma = auth::check_message_authenticator(bytes, &[0; 16], &secret);
        if !auth::verify_request(bytes, &secret)
            || matches!(
                ma,
                MessageAuthenticator::Invalid | MessageAuthenticator::Malformed
            )
        {
            tracing::debug!(%from, server = %aaa_name, "CoA request with a bad authenticator dropped");
            return;
        }
        let Some(dedup) = self.admit(now, listener, from, &request, out) else {
            return;
        };
        let by_nas_ip = request
            .get(NAS_IP_ADDRESS)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(IpAddr::from)
            .and_then(|ip| self.clients.lookup(ip).map(|client| (client, ip)));
        let coa = CoaRequest {
            listener,
            from,
            secret,
            had_message_authenticator: ma == MessageAuthenticator::Valid,
            dedup,
            request,
        };
        let Some((nas, nas_ip)) = by_nas_ip.or_else(|| self.sessions.owner(&coa.request)) else {
            self.coa_unroutable += 1;
            let code = match coa.request.code {
                Code::CoaRequest => Code::CoaNak,
                _ => Code::DisconnectNak,
            };
            let mut nak = Message::new(code, coa.request.identifier);
            nak.add_fixed(ERROR_CAUSE, ErrorCause::SessionContextNotFound.to_value());
            self.answer_coa(&coa, nak, out);
            return;
        };
        let Some((slot, id)) = self.coa_ids.allocate() else {
            self.replies.forget(&coa.dedup);
            return;
        };
        let nas_config = &self.clients.all()[nas];
        let destination = SocketAddr::new(nas_ip, nas_config.coa_port);
        let nas_secret: Arc<[u8]> = Arc::from(&nas_config.secret[..]);
        let mut packet = coa.request.clone();
        packet.identifier = id;
        let proxy_state = self.proxy_state();
        packet.add_fixed(PROXY_STATE, proxy_state);
        let message_authenticator = if coa.had_message_authenticator {
            Ma::First
        } else {
            Ma::Remove
        };
        let retry = Retry {
            timeout: COA_TIMEOUT,
            attempts: COA_ATTEMPTS,
        };
        let exchange = match Exchange::new(
            now,
            packet,
            nas_secret,
            [0; 16],
            message_authenticator,
            retry,
        ) {
            Ok(exchange) => exchange,
            Err(err) => {
                tracing::debug!(%err, "CoA request cannot be relayed; dropped");
                self.coa_ids.release(slot, id);
                self.replies.forget(&coa.dedup);
                return;
            }
        };
        self.client_stats[nas].coa_relayed += 1;
        out.push(Output::Transmit(Transmit {
            socket: SocketRef::NasCoa { slot },
            to: destination,
            bytes: exchange.datagram().to_vec(),
        }));
        self.add_pending(
            (PendingSocket::NasCoa(slot), id),
            Pending {
                origin: Origin::Coa(Box::new(coa)),
                exchange,
                proxy_state: Some(proxy_state),
                destination,
            },
        );
    }

    pub(super) fn relay_coa_reply(
        &mut self,
        coa: CoaRequest,
        mut reply: Message,
        proxy_state: Option<[u8; 4]>,
        out: &mut Vec<Output>,
    ) {
        if let Some(token) = proxy_state {
            remove_proxy_state(&mut reply, &token);
        }
        self.answer_coa(&coa, reply, out);
    }

    pub(super) fn answer_coa(
        &mut self,
        coa: &CoaRequest,
        mut reply: Message,
        out: &mut Vec<Output>,
    ) {
        reply.identifier = coa.request.identifier;
        // Proxy-State of the AAA side goes back unmodified (RFC 5176 §3.3).
        if reply.get(PROXY_STATE).is_none() {
            copy_proxy_states(&coa.request, &mut reply);
        }
        let Some(bytes) = finalize_response(
            &mut reply,
            &coa.request,
            &coa.secret,
            coa.had_message_authenticator,
        ) else {
            self.replies.forget(&coa.dedup);
            return;
        };
        self.replies.answer(&coa.dedup, &bytes);
        out.push(Output::Transmit(Transmit {
            socket: SocketRef::Listener(ListenerId(coa.listener)),
            to: coa.from,
            bytes,
        }));
    }
}
