//! Local answers: authentication from a local database, accounting records.

use super::*;
use crate::local::{self, AuthOutcome};

impl Engine {
    pub(super) fn answer_locally(
        &mut self,
        now: Instant,
        database: usize,
        job: ClientRequest,
        out: &mut Vec<Output>,
    ) {
        let Some(db) = self.local_databases.get(database) else {
            return;
        };
        let client = &self.clients.all()[job.client];
        let mut reply = match job.request.code {
            Code::AccountingRequest => {
                let record = local::accounting_record(
                    &self.dictionary,
                    &job.request,
                    &client.name,
                    job.from,
                );
                out.push(Output::Accounting { database, record });
                Message::new(Code::AccountingResponse, job.request.identifier)
            }
            _ => {
                let (outcome, user) =
                    local::authenticate(db, &self.dictionary, &job.request, &client.secret);
                match (outcome, user) {
                    (AuthOutcome::Accept, Some(user)) => {
                        let mut reply = Message::new(Code::AccessAccept, job.request.identifier);
                        for pair in &user.reply {
                            if let Err(err) = self.dictionary.add_pair(
                                &mut reply,
                                pair,
                                &client.secret,
                                &job.request.authenticator,
                            ) {
                                tracing::warn!(%err, "reply attribute does not fit");
                            }
                        }
                        reply
                    }
                    (AuthOutcome::Accept, None) => {
                        Message::new(Code::AccessAccept, job.request.identifier)
                    }
                    (AuthOutcome::Reject(reason), _) => {
                        tracing::info!(client = %client.name, reason, "Access-Reject");
                        Message::new(Code::AccessReject, job.request.identifier)
                    }
                }
            }
        };
        copy_proxy_states(&job.request, &mut reply);
        self.deliver_reply(now, Box::new(job), reply, out);
    }
}
