//! Hook points: the inline policy, and external hooks that park an exchange until the
//! processor answers.

use super::*;

impl Engine {
    /// The answer of an external hook processor to [`Output::Hook`]. The exchange goes on where
    /// it stopped (upstream selection or local answering after `egress`, the reply to the NAS
    /// after `ingress`). A ticket that is unknown (already timed out) is ignored.
    pub fn resume_hook(
        &mut self,
        now: Instant,
        ticket: HookTicket,
        result: HookResult,
        out: &mut Vec<Output>,
    ) {
        let Some(parked) = self.parked.remove(&ticket.0) else {
            return;
        };
        let Parked { mut job, reply, .. } = parked;
        let packet = match result {
            HookResult::Continue(packet) => packet,
            HookResult::Drop => {
                self.client_stats[job.client].dropped_by_policy += 1;
                self.replies.forget(&job.dedup);
                return;
            }
        };
        match reply {
            None => {
                job.request.attributes = packet.attributes;
                self.dispatch(now, job, out);
            }
            Some(mut reply) => {
                reply.attributes = packet.attributes;
                self.answer_client(&job, reply, true, out);
            }
        }
    }

    /// The external hook set of `server` if it covers (`code`, `direction`).
    pub(super) fn external_handler(
        &self,
        server: usize,
        code: Code,
        direction: Direction,
    ) -> Option<usize> {
        self.servers[server]
            .external_hooks
            .as_ref()
            .filter(|hooks| hooks.covers(code, direction))
            .map(|hooks| hooks.handler)
    }

    /// Parks `job` (with `reply` at ingress) and asks the shell to run the external hook.
    pub(super) fn park(
        &mut self,
        now: Instant,
        handler: usize,
        direction: Direction,
        mut job: Box<ClientRequest>,
        mut reply: Option<Message>,
        out: &mut Vec<Output>,
    ) {
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        // The hooked packet's attributes travel to the processor and come back in
        // `resume_hook`; the parked copy keeps only its header meanwhile (at ingress the
        // request stays whole: answering needs it).
        let hooked = reply.as_mut().unwrap_or(&mut job.request);
        let packet = Message {
            code: hooked.code,
            identifier: hooked.identifier,
            authenticator: hooked.authenticator,
            attributes: std::mem::take(&mut hooked.attributes),
        };
        out.push(Output::Hook(HookRequest {
            ticket: HookTicket(ticket),
            handler,
            direction,
            packet,
            client: Arc::clone(&self.client_names[job.client]),
            server: Arc::clone(&self.server_names[job.server]),
        }));
        let deadline = now + self.external_hook_timeout;
        self.timers.push(Reverse((deadline, Timer::Hook(ticket))));
        self.hooks_deferred += 1;
        self.parked.insert(
            ticket,
            Parked {
                job,
                reply,
                deadline,
            },
        );
    }

    pub(super) fn run_hook(
        &self,
        job: &mut ClientRequest,
        direction: Direction,
        reply: Option<&mut Message>,
    ) -> Verdict {
        let Some(policy) = self.servers[job.server]
            .policy
            .and_then(|index| self.policies.get(index))
        else {
            return Verdict::Continue;
        };
        let client = &self.clients.all()[job.client];
        let (packet, request) = match reply {
            Some(reply) => (reply, Some(&job.request)),
            None => (&mut job.request, None),
        };
        let authenticator = match request {
            Some(request) => request.authenticator,
            None => packet.authenticator,
        };
        let mut context = HookContext {
            code: packet.code,
            direction,
            packet,
            request,
            dictionary: &self.dictionary,
            client: &client.name,
            server: &self.servers[job.server].name,
            secret: &client.secret,
            authenticator,
        };
        policy.apply(&mut context)
    }
}
