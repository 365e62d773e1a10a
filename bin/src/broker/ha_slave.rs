//! The slave's side of replication (`docs/replication.md`; in controller mode
//! `docs/failover.md`): a connection to the master's HA port driving a `HaSlave` core, which
//! checks what arrives and says what to append, report, and (in controller mode) where to cut
//! the log back before copying.

use std::sync::Arc;
use std::time::Duration;

use petrel_core::ha::autoswitch::{self, FromMaster, SlaveHello};
use petrel_core::ha::codec::{encode_report, TransferDecoder};
use petrel_core::ha::slave::{HaSlave, SlaveAction, SlaveConfig, SlaveEvent};
use petrel_net::signal::Flag;
use petrel_storage::FlushDiskType;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ha::{split, until, AbortOnDrop, RECONNECT_DELAY};
use super::Broker;
use crate::clock::now_millis;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Beyond `maxMessageSize`, what one stored unit may add: a batch's record headers (a few
/// hundred bytes for each of its messages), or a blank filler left by such a batch.
const RECORD_OVERHEAD_BYTES: u64 = 2 << 20;

/// A slave's connection to its master, kept up until `stop`; in controller mode, only while
/// the broker is a slave, each connection ending with the role's term.
pub(super) async fn run(broker: Arc<Broker>, stop: Flag) {
    loop {
        let term = broker.term();
        let following = broker.config.controller.is_none() || !broker.is_master();
        match broker.ha_master().filter(|_| following) {
            Some(master) => {
                let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&master));
                match connect.await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        tracing::info!(%master, "connected to the master's HA port");
                        link(&broker, stream, &stop, &term).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%master, %error, "cannot reach the master"),
                    Err(_) => tracing::debug!(%master, "connecting to the master timed out"),
                }
                if broker.config.controller.is_some() {
                    // The master moves: learn it afresh from the NameServer.
                    *super::lock(&broker.learned_master) = None;
                }
            }
            None if following && broker.registered_id().is_some() => {
                // The NameServer names the master only while it is registered: ask again
                // now rather than at the next registration period.
                tracing::debug!("no master HA address yet; registering again");
                broker.register_now.notify_one();
            }
            None => {}
        }
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(RECONNECT_DELAY) => {}
        }
    }
}

fn config(broker: &Broker) -> SlaveConfig {
    let config = &broker.config;
    let record_bytes_max = 2 * config.store.message_bytes_max as u64 + RECORD_OVERHEAD_BYTES;
    let hello = config.controller.as_ref().map(|controller| SlaveHello {
        broker_id: broker.registered_id().unwrap_or(0).max(0) as u64,
        sync_from_last_file: controller.sync_from_last_file,
        async_learner: controller.async_learner,
    });
    let master_epoch = super::lock(&broker.replicas).as_ref().map_or(0, |r| r.master_epoch());
    SlaveConfig {
        file_bytes: config.store.commit_log_file_bytes,
        record_bytes_max,
        heartbeat_ms: config.ha_heartbeat_ms,
        housekeeping_ms: config.ha_housekeeping_ms,
        hello,
        master_epoch,
    }
}

/// One connection to the master: frames in, appended and reported; until `stop`, or until
/// the role's `term` ends.
async fn link(broker: &Arc<Broker>, stream: TcpStream, stop: &Flag, term: &Flag) {
    let (reader, mut writer) = split(stream);
    // Frames are read on their own task, so that the master, blocked sending them, always
    // gets this slave's reports read in turn.
    let (frames, mut received) = tokio::sync::mpsc::channel(64);
    let auto_switch = broker.config.controller.is_some();
    let _reading = AbortOnDrop(tokio::spawn(read_frames(reader, frames, auto_switch)));
    let store = broker.store.store();
    let mut core = HaSlave::new(config(broker), store.written_offset());
    if auto_switch {
        core = core.with_epochs(store.epoch_cache());
    }
    core.handle(now_millis(), SlaveEvent::Connected);
    loop {
        while let Some(action) = core.poll_action() {
            match carry_out(broker, term, &mut writer, action).await {
                Ok(Some(event)) => core.handle(now_millis(), event),
                Ok(None) => {}
                Err(why) => {
                    tracing::warn!(%why, "the master's HA connection ends");
                    return;
                }
            }
        }
        core.check_invariants();
        let deadline = core.poll_timeout();
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            _ = term.wait() => return,
            frame = received.recv() => match frame {
                Some(FromMaster::Transfer(frame)) => core.handle(now_millis(), SlaveEvent::Received(frame)),
                Some(FromMaster::Hello(hello)) => core.handle(now_millis(), SlaveEvent::Answered(hello)),
                None => return,
            },
            () = until(deadline) => core.tick(now_millis()),
        }
    }
}

/// Carries out one of the core's actions; the event to tell it, if any; `Err` ends the link.
async fn carry_out(
    broker: &Broker,
    term: &Flag,
    writer: &mut (impl AsyncWrite + Unpin),
    action: SlaveAction,
) -> Result<Option<SlaveEvent>, String> {
    let auto_switch = broker.config.controller.is_some();
    // The store is written only while this broker still follows in the role it began in.
    let writing = broker.role_write();
    if term.is_set() {
        return Err("the broker's role changed".into());
    }
    let frame = match action {
        SlaveAction::Hello(hello) => autoswitch::encode_slave_hello(&hello).to_vec(),
        SlaveAction::Report { offset } if auto_switch => {
            autoswitch::encode_slave_report(offset).to_vec()
        }
        SlaveAction::Report { offset } => encode_report(offset).to_vec(),
        SlaveAction::Append { offset, records, epoch } => {
            let appended = broker.store.append_replicated(offset, &records, epoch);
            let end = appended.map_err(|e| format!("cannot append what the master sent: {e}"))?;
            // Its log is its master's now: what a crash tore off in it is not its to repair.
            broker.store().release_recovery_start();
            // In controller mode under SYNC_FLUSH a slave's ack means durable: an acknowledged
            // message survives the power loss of every member of the set but one.
            if auto_switch && broker.config.store.flush_disk_type == FlushDiskType::SyncFlush {
                let flushed = broker.store.persist();
                flushed.map_err(|e| format!("cannot flush what the master sent: {e}"))?;
            }
            return Ok(Some(SlaveEvent::Appended { end }));
        }
        SlaveAction::Truncate { to } => {
            tracing::warn!(
                to,
                end = broker.store().written_offset(),
                "cutting the log back to the master's"
            );
            return match broker.store.truncate_to(to) {
                Ok(()) => Ok(Some(SlaveEvent::Truncated { end: broker.store().written_offset() })),
                Err(error) => Err(format!("cannot cut the log back to {to}: {error}")),
            };
        }
        SlaveAction::Confirm { up_to } => {
            broker.store.upstream_confirmed(up_to);
            return Ok(None);
        }
        SlaveAction::Close { why } => return Err(why),
    };
    drop(writing);
    let sent = async {
        writer.write_all(&frame).await?;
        writer.flush().await
    };
    sent.await.map(|()| None).map_err(|error| format!("lost: {error}"))
}

/// Reads the master's frames until the connection ends or a frame is malformed.
async fn read_frames(
    mut reader: impl AsyncRead + Unpin,
    frames: tokio::sync::mpsc::Sender<FromMaster>,
    auto_switch: bool,
) {
    let mut classic = TransferDecoder::default();
    let mut decoder = autoswitch::Decoder::default();
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                tracing::info!("the master closed the HA connection");
                return;
            }
            Ok(n) if auto_switch => decoder.feed(&buffer[..n]),
            Ok(n) => classic.feed(&buffer[..n]),
        }
        loop {
            let next = match auto_switch {
                true => decoder.from_master().map_err(|e| e.to_string()),
                false => classic
                    .next_frame()
                    .map(|f| f.map(FromMaster::Transfer))
                    .map_err(|e| e.to_string()),
            };
            match next {
                Ok(Some(frame)) => {
                    if frames.send(frame).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "malformed frame from the master; closing");
                    return;
                }
            }
        }
    }
}
