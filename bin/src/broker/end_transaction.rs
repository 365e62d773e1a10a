//! END_TRANSACTION (37): a producer commits or rolls back its transaction, on its own or in
//! answer to CHECK_TRANSACTION_STATE (`EndTransactionProcessor`).
//!
//! The transaction core (`petrel_core::broker::transaction::plan_end`) decides from the half
//! message read at the request's commit-log offset and from the resolved index; this shell
//! appends what it says under the index's lock: a commit's record in the real topic and the
//! op as one unit, or a rollback's op alone. It answers once the store acknowledges the
//! append; RocketMQ's clients send the request oneway and read no answer. A commit with a
//! delay level or a timer ask waits in the schedule or timer topic first, as a send would.
//! Unlike RocketMQ, a transaction committed or rolled back once is refused a second time:
//! nothing is delivered twice, and nothing after its rollback.

use std::sync::Arc;

use petrel_core::broker::transaction::{
    self, plan_end, Committed, EndContext, EndPlan, EndRequest, UNKNOWN,
};
use petrel_core::record::{Record, RecordInput};
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::EndTransactionRequestHeader;
use petrel_net::signal::Flag;
use petrel_net::transport::{Connection, Handled};
use petrel_storage::{Appended, PutError};

use super::send_message::{store_error, store_refusal};
use super::transactions::{half_view, resolve, scanned};
use super::{answered, decode, success, Broker, Outcome, Refusal};
use crate::clock::now_millis;

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let outcome = end(broker, request);
    // The request is usually oneway: the log is the only place a refusal shows.
    if let Err(refusal) = &outcome {
        tracing::debug!(code = refusal.code, remark = %refusal.remark, "transaction end refused");
    }
    outcome
}

fn end(broker: &Arc<Broker>, request: &RemotingCommand) -> Outcome {
    let header = decode::<EndTransactionRequestHeader>(request)?;
    let end = EndRequest {
        producer_group: &header.producer_group,
        tran_state_table_offset: header.tran_state_table_offset,
        commit_log_offset: header.commit_log_offset,
        commit_or_rollback: header.commit_or_rollback,
        from_transaction_check: header.from_transaction_check.unwrap_or(false),
    };
    if end.commit_or_rollback == UNKNOWN {
        tracing::debug!(msg_id = %header.msg_id, "transaction state unknown: it will be checked");
    }
    let term = broker.config.controller.as_ref().map(|_| broker.term());
    if end.commit_or_rollback != UNKNOWN {
        if let Some(refused) = broker.write_refusal() {
            return Err(refused);
        }
    }
    let bytes = u64::try_from(end.commit_log_offset)
        .ok()
        .and_then(|offset| broker.store().message_at(offset));
    let record = bytes.as_deref().and_then(scanned);
    let half = record.as_ref().map(half_view);
    let mut transactions = broker.transactions();
    let (resolved, origin) = match &half {
        Some(half) => {
            let origin = transaction::origin(half.properties, half.queue_offset);
            let resolved = transactions.resolved(half.queue_offset, origin);
            (resolved.map_err(|why| Refusal::new(response::SYSTEM_ERROR, why))?, origin)
        }
        None => (false, 0),
    };
    let now = now_millis() as i64;
    let context = EndContext {
        is_slave: !broker.is_master(),
        resolved,
        now,
        transaction_timeout_ms: broker.config.transactions.timeout_ms as i64,
    };
    let plan = match plan_end(&end, half.as_ref(), &context)? {
        EndPlan::Commit(committed) => {
            let config = broker.send_config.read().unwrap_or_else(|p| p.into_inner());
            let committed = committed.waiting(&config, now)?;
            drop(config);
            if let Some(slot) = committed.timer_slot() {
                broker.timer_flow_control(slot)?;
            }
            EndPlan::Commit(committed)
        }
        plan => plan,
    };
    let (Some(record), Some(half)) = (record.as_ref(), half.as_ref()) else {
        return answered(success());
    };
    let writing = term.as_ref().map(|_| broker.role_write());
    if term.as_ref().is_some_and(Flag::is_set) {
        let why = "the broker's role changed while the transaction was checked; end it again";
        return Err(Refusal::new(response::SERVICE_NOT_AVAILABLE, why));
    }
    let appended = match &plan {
        EndPlan::Nothing => return answered(success()),
        EndPlan::Rollback => resolve(broker, &mut transactions, None, half.queue_offset, origin),
        EndPlan::Commit(committed) => {
            let input = committed_record(broker, record, committed);
            resolve(broker, &mut transactions, Some(input), half.queue_offset, origin)
        }
    }
    .map_err(|e| store_error(broker, &e))?;
    drop((transactions, writing));
    answer_when_acknowledged(broker, appended)
}

/// The committed message: the half message's record in its real topic and queue.
fn committed_record<'a>(
    broker: &Broker,
    half: &Record<'a>,
    committed: &'a Committed,
) -> RecordInput<'a> {
    RecordInput {
        topic: &committed.topic,
        queue_id: committed.queue_id,
        flag: half.flag,
        sys_flag: committed.sys_flag,
        born_timestamp: half.born_timestamp,
        born_host: half.born_host,
        store_host: broker.config.store.store_host,
        reconsume_times: half.reconsume_times,
        prepared_transaction_offset: committed.prepared_transaction_offset,
        body: half.body,
        properties: &committed.properties,
    }
}

/// SUCCESS once the store acknowledges the append (RocketMQ answers a flush or slave
/// timeout as done too).
fn answer_when_acknowledged(broker: &Arc<Broker>, appended: Appended) -> Outcome {
    if broker.store.is_acknowledged(&appended) {
        return answered(success());
    }
    let broker = broker.clone();
    Ok(Handled::Later(Box::pin(async move {
        match broker.store.wait_acknowledged(appended).await {
            Ok(_) | Err(PutError::FlushTimeout { .. } | PutError::SlaveTimeout { .. }) => success(),
            Err(PutError::NotDurable { reason, .. }) => {
                let why =
                    format!("the transaction's end was stored but not made durable: {reason}");
                RemotingCommand::response(response::SYSTEM_ERROR, Some(why))
            }
            Err(PutError::Store(e)) => store_refusal(&e).into(),
        }
    })))
}
