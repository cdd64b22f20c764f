//! Proxying: upstream selection (failover, round-robin, client-balance), the request to the
//! server, its answer or timeout and failover, dead-server detection and Status-Server probes
//! (RFC 5997).

use super::*;

impl Engine {
    pub(super) fn is_alive(&mut self, now: Instant, key: UpstreamKey) -> bool {
        let revive_after = self.pools[key.pool].config.revive_after;
        let probing = !self.pools[key.pool].config.status_check_interval.is_zero();
        let Some(upstream) = self.upstream_mut(key) else {
            return false;
        };
        upstream.health.is_alive(now, revive_after, probing)
    }

    /// Picks a live server of the pool not yet tried for this request.
    pub(super) fn select(
        &mut self,
        now: Instant,
        pool: usize,
        accounting: bool,
        job: &ClientRequest,
    ) -> Option<usize> {
        let count = self.pools[pool].list(accounting).len();
        let mut candidates = Vec::with_capacity(count);
        for server in 0..count {
            if !job.tried.contains(&server)
                && self.is_alive(
                    now,
                    UpstreamKey {
                        pool,
                        accounting,
                        server,
                    },
                )
            {
                candidates.push(server);
            }
        }
        if candidates.is_empty() {
            return None;
        }
        let pool_state = &mut self.pools[pool];
        let choice = match pool_state.config.load_balance {
            LoadBalance::Failover => candidates[0],
            LoadBalance::RoundRobin => {
                let cursor = &mut pool_state.cursor[usize::from(accounting)];
                let pick = candidates[*cursor % candidates.len()];
                *cursor = cursor.wrapping_add(1);
                pick
            }
            LoadBalance::ClientBalance => {
                let mut hash = fnv1a(&ip_bytes(job.from.ip()));
                if let Some(name) = job.request.get(USER_NAME) {
                    hash ^= fnv1a(name).rotate_left(17);
                }
                candidates[(hash % candidates.len() as u64) as usize]
            }
        };
        Some(choice)
    }

    pub(super) fn forward(
        &mut self,
        now: Instant,
        pool: usize,
        accounting: bool,
        mut job: Box<ClientRequest>,
        out: &mut Vec<Output>,
    ) {
        loop {
            let Some(server) = self.select(now, pool, accounting, &job) else {
                tracing::debug!(pool = %self.pools[pool].config.name, "no live upstream server");
                self.client_stats[job.client].unanswered += 1;
                self.replies.forget(&job.dedup);
                return;
            };
            job.tried.push(server);
            let key = UpstreamKey {
                pool,
                accounting,
                server,
            };
            let Some((slot, id)) = self.upstream_mut(key).and_then(|u| u.ids.allocate()) else {
                continue; // this server is at its in-flight limit: try the next one
            };
            let Some(upstream) = self.upstream(key) else {
                return;
            };
            let (secret, destination) = (upstream.secret.clone(), upstream.config.address);
            let mut authenticator = [0u8; 16];
            self.rng.fill(&mut authenticator);
            let proxy_state = self.proxy_state();
            let retry = Retry {
                timeout: self.pools[pool].config.timeout,
                attempts: 1,
            };
            match self.upstream_request(&job, id, &secret, authenticator, proxy_state, now, retry) {
                Ok(exchange) => {
                    let retry = job.tried.len() > 1;
                    if let Some(upstream) = self.upstream_mut(key) {
                        upstream.stats.requests += 1;
                        if retry {
                            upstream.stats.retransmissions += 1;
                        }
                    }
                    out.push(Output::Transmit(Transmit {
                        socket: SocketRef::Upstream { key, slot },
                        to: destination,
                        bytes: exchange.datagram().to_vec(),
                    }));
                    self.add_pending(
                        (PendingSocket::Upstream(pool, accounting, server, slot), id),
                        Pending {
                            origin: Origin::Client(job),
                            exchange,
                            proxy_state: Some(proxy_state),
                            destination,
                        },
                    );
                }
                Err(err) => {
                    tracing::debug!(%err, "request cannot be proxied; dropped");
                    self.release(key, slot, id);
                    self.client_stats[job.client].malformed += 1;
                    self.replies.forget(&job.dedup);
                }
            }
            return;
        }
    }

    /// The NAS's request as it goes to an upstream server: Identifier `id`, brasa's
    /// Proxy-State, encrypted attributes re-hidden for the server's secret, signed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn upstream_request(
        &self,
        job: &ClientRequest,
        id: u8,
        secret: &Arc<[u8]>,
        authenticator: [u8; 16],
        proxy_state: [u8; 4],
        now: Instant,
        retry: Retry,
    ) -> Result<Exchange, String> {
        let mut packet = job.request.clone();
        packet.identifier = id;
        packet.add_fixed(PROXY_STATE, proxy_state);
        let message_authenticator = if packet.code == Code::AccessRequest {
            let client_secret = &self.clients.all()[job.client].secret;
            self.dictionary
                .reencrypt(
                    &mut packet,
                    client_secret,
                    &job.request.authenticator,
                    secret,
                    &authenticator,
                )
                .map_err(|e| e.to_string())?;
            // Blast-RADIUS: every proxied Access-Request carries a Message-Authenticator.
            Ma::First
        } else {
            Ma::Remove
        };
        Exchange::new(
            now,
            packet,
            secret.clone(),
            authenticator,
            message_authenticator,
            retry,
        )
        .map_err(|e| e.to_string())
    }

    pub(super) fn release(&mut self, key: UpstreamKey, slot: u16, id: u8) {
        if let Some(upstream) = self.upstream_mut(key) {
            upstream.ids.release(slot, id);
        }
    }

    /// A pending request's deadline passed: a CoA is sent again, an upstream request fails over.
    pub(super) fn expire_pending(&mut self, now: Instant, key: PendingKey, out: &mut Vec<Output>) {
        let (socket, id) = key;
        let Some(pending) = self.pending.get_mut(&key) else {
            return;
        };
        match pending.exchange.handle_timeout(now) {
            Timeout::NotDue => return,
            Timeout::Resend(bytes) => {
                let socket = match socket {
                    PendingSocket::NasCoa(slot) => SocketRef::NasCoa { slot },
                    PendingSocket::Upstream(pool, accounting, server, slot) => {
                        SocketRef::Upstream {
                            key: UpstreamKey {
                                pool,
                                accounting,
                                server,
                            },
                            slot,
                        }
                    }
                };
                out.push(Output::Transmit(Transmit {
                    socket,
                    to: pending.destination,
                    bytes: bytes.to_vec(),
                }));
                let deadline = pending.exchange.deadline();
                self.timers.push(Reverse((deadline, Timer::Pending(key))));
                return;
            }
            Timeout::GaveUp => {}
        }
        let Some(pending) = self.pending.remove(&key) else {
            return;
        };
        match socket {
            PendingSocket::NasCoa(slot) => {
                self.coa_ids.release(slot, id);
                if let Origin::Coa(coa) = pending.origin {
                    tracing::info!(nas = %pending.destination, "CoA/Disconnect request unanswered by the NAS");
                    self.replies.forget(&coa.dedup);
                }
            }
            PendingSocket::Upstream(pool, accounting, server, slot) => {
                let upstream_key = UpstreamKey {
                    pool,
                    accounting,
                    server,
                };
                let dead_after = self.pools[pool].config.dead_after_timeouts.max(1);
                let probe_interval = self.pools[pool].config.status_check_interval;
                let mut schedule_probe = false;
                if let Some(upstream) = self.upstream_mut(upstream_key) {
                    upstream.ids.release(slot, id);
                    let became_dead = match pending.origin {
                        Origin::Probe => {
                            upstream.probe_outstanding = false;
                            false
                        }
                        _ => {
                            upstream.stats.timeouts += 1;
                            upstream.health.timed_out(now, dead_after)
                        }
                    };
                    if became_dead {
                        tracing::warn!(server = %upstream.config.name, address = %upstream.config.address, "upstream server marked dead");
                        schedule_probe = !probe_interval.is_zero();
                    } else if !upstream.health.alive() && matches!(pending.origin, Origin::Probe) {
                        schedule_probe = true;
                    }
                }
                if schedule_probe {
                    self.timers.push(Reverse((
                        now + probe_interval,
                        Timer::Probe(pool, accounting, server),
                    )));
                }
                if let Origin::Client(job) = pending.origin {
                    let retries = self.pools[pool].config.retries;
                    if job.tried.len() as u32 <= retries {
                        self.forward(now, pool, accounting, job, out);
                    } else {
                        self.client_stats[job.client].unanswered += 1;
                        self.replies.forget(&job.dedup);
                    }
                }
            }
        }
    }

    pub(super) fn send_probe(&mut self, now: Instant, key: UpstreamKey, out: &mut Vec<Output>) {
        let timeout = match self.pools.get(key.pool) {
            Some(pool) => pool.config.timeout,
            None => return,
        };
        let mut authenticator = [0u8; 16];
        self.rng.fill(&mut authenticator);
        let Some(upstream) = self.upstream_mut(key) else {
            return;
        };
        if upstream.health.alive() || upstream.probe_outstanding {
            return;
        }
        let Some((slot, id)) = upstream.ids.allocate() else {
            return;
        };
        let retry = Retry {
            timeout,
            attempts: 1,
        };
        let probe = Message::new(Code::StatusServer, id);
        let Ok(exchange) = Exchange::new(
            now,
            probe,
            upstream.secret.clone(),
            authenticator,
            Ma::First,
            retry,
        ) else {
            upstream.ids.release(slot, id);
            return;
        };
        upstream.probe_outstanding = true;
        upstream.stats.status_probes += 1;
        let destination = upstream.config.address;
        out.push(Output::Transmit(Transmit {
            socket: SocketRef::Upstream { key, slot },
            to: destination,
            bytes: exchange.datagram().to_vec(),
        }));
        self.add_pending(
            (
                PendingSocket::Upstream(key.pool, key.accounting, key.server, slot),
                id,
            ),
            Pending {
                origin: Origin::Probe,
                exchange,
                proxy_state: None,
                destination,
            },
        );
    }

    /// An answer from an upstream server or a NAS (to a relayed CoA).
    pub(super) fn handle_reply(
        &mut self,
        now: Instant,
        socket: PendingSocket,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        let upstream_key = match socket {
            PendingSocket::Upstream(pool, accounting, server, _) => Some(UpstreamKey {
                pool,
                accounting,
                server,
            }),
            PendingSocket::NasCoa(_) => None,
        };
        let identifier = wire::Packet::new_unchecked(bytes).identifier();
        let key = (socket, identifier);
        let Some(pending) = self.pending.get(&key) else {
            self.count_reply_error(upstream_key, false);
            tracing::debug!(%from, id = identifier, "reply matches no outstanding request");
            return;
        };
        if from != pending.destination {
            self.count_reply_error(upstream_key, false);
            return;
        }
        let reply = match pending.exchange.verify(bytes) {
            Ok(reply) => reply,
            Err(err @ (ReplyError::Malformed(_) | ReplyError::OtherIdentifier(_))) => {
                self.count_reply_error(upstream_key, false);
                tracing::debug!(%from, %err, "malformed reply dropped");
                return;
            }
            Err(err) => {
                self.count_reply_error(upstream_key, true);
                tracing::debug!(%from, %err, "reply with a bad authenticator dropped");
                return;
            }
        };
        let Some(pending) = self.pending.remove(&key) else {
            return;
        };
        let Some(key) = upstream_key else {
            if let (PendingSocket::NasCoa(slot), Origin::Coa(coa)) = (socket, pending.origin) {
                self.coa_ids.release(slot, identifier);
                self.relay_coa_reply(*coa, reply, pending.proxy_state, out);
            }
            return;
        };
        let PendingSocket::Upstream(_, _, _, slot) = socket else {
            return;
        };
        let probe = matches!(pending.origin, Origin::Probe);
        if let Some(upstream) = self.upstream_mut(key) {
            upstream.ids.release(slot, identifier);
            let sample = now.saturating_duration_since(pending.exchange.sent_at());
            upstream.rtt = Some(match upstream.rtt {
                Some(rtt) => (rtt * 7 + sample) / 8,
                None => sample,
            });
            if upstream.health.answered() {
                tracing::info!(server = %upstream.config.name, "upstream server alive again");
            }
            if probe {
                // A probe answer is not a request answer.
                upstream.probe_outstanding = false;
            } else {
                match reply.code {
                    Code::AccessAccept => upstream.stats.accepts += 1,
                    Code::AccessReject => upstream.stats.rejects += 1,
                    Code::AccessChallenge => upstream.stats.challenges += 1,
                    Code::AccountingResponse => upstream.stats.accounting_responses += 1,
                    _ => {}
                }
            }
        }
        if let Origin::Client(job) = pending.origin {
            let (exchange, proxy_state) = (pending.exchange, pending.proxy_state);
            self.relay_upstream_reply(now, job, reply, &exchange, proxy_state, out);
        }
    }

    pub(super) fn count_reply_error(&mut self, key: Option<UpstreamKey>, bad_authenticator: bool) {
        if let Some(upstream) = key.and_then(|key| self.upstream_mut(key)) {
            if bad_authenticator {
                upstream.stats.bad_authenticator += 1;
            } else {
                upstream.stats.malformed += 1;
            }
        }
    }

    pub(super) fn relay_upstream_reply(
        &mut self,
        now: Instant,
        job: Box<ClientRequest>,
        mut reply: Message,
        exchange: &Exchange,
        proxy_state: Option<[u8; 4]>,
        out: &mut Vec<Output>,
    ) {
        if let Some(token) = proxy_state {
            remove_proxy_state(&mut reply, &token);
        }
        let client_secret = &self.clients.all()[job.client].secret;
        if let Err(err) = self.dictionary.reencrypt(
            &mut reply,
            exchange.secret(),
            exchange.authenticator(),
            client_secret,
            &job.request.authenticator,
        ) {
            tracing::debug!(%err, "cannot re-hide encrypted reply attributes; dropped");
            self.client_stats[job.client].malformed += 1;
            self.replies.forget(&job.dedup);
            return;
        }
        self.deliver_reply(now, job, reply, out);
    }
}

pub(super) fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match crate::clients::canonical(ip) {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
