//! Replication's shells (`docs/replication.md`): the master's HA listener, one task per slave
//! driving a `HaMaster` core, and the slave's connection to its master driving a `HaSlave`
//! core. The cores decide; these read and write the sockets and the store.

use std::sync::Arc;
use std::time::Duration;

use petrel_core::ha::codec::{
    encode_report, encode_transfer_header, ReportDecoder, TransferDecoder,
};
use petrel_core::ha::master::{HaMaster, MasterAction, MasterConfig, MasterEvent};
use petrel_core::ha::slave::{HaSlave, SlaveAction, SlaveConfig, SlaveEvent};
use petrel_core::Millis;
use petrel_net::signal::Flag;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::config::{BrokerConfig, BrokerRole};
use super::Broker;
use crate::clock::now_millis;

/// How long a slave waits before connecting again (RocketMQ waits 5 s; a shorter wait loses
/// less time after a master restart and costs one connection attempt a second).
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Beyond `maxMessageSize`, what one stored unit may add: a batch's record headers (a few
/// hundred bytes for each of its messages), or a blank filler left by such a batch.
const RECORD_OVERHEAD_BYTES: u64 = 2 << 20;

/// Sleeps until `at` (the broker clock's milliseconds), or for ever when there is nothing due.
async fn until(at: Option<Millis>) {
    match at {
        Some(at) => {
            tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_millis()))).await
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(madsim))]
fn split(
    stream: TcpStream,
) -> (impl AsyncRead + Unpin + Send + 'static, impl AsyncWrite + Unpin + Send + 'static) {
    stream.into_split()
}

#[cfg(madsim)]
fn split(
    stream: TcpStream,
) -> (impl AsyncRead + Unpin + Send + 'static, impl AsyncWrite + Unpin + Send + 'static) {
    tokio::io::split(stream)
}

/// A master's HA listener on `bindAddress:haListenPort`, and the port slaves are told; a
/// slave has none.
pub(super) async fn bind(config: &BrokerConfig) -> Result<(Option<TcpListener>, u16), String> {
    if config.role == BrokerRole::Slave {
        return Ok((None, config.ha_port()));
    }
    let ha_bind = format!("{}:{}", config.bind_address, config.ha_port());
    let listener = TcpListener::bind(&ha_bind)
        .await
        .map_err(|e| format!("cannot listen for slaves on {ha_bind}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    Ok((Some(listener), port))
}

/// The role's tasks: a master serves its slaves and delivers delayed messages; a slave
/// follows its master's log and copies its configuration (and re-puts nothing: its log is
/// its master's).
pub(super) fn spawn(
    broker: &Arc<Broker>,
    listener: Option<TcpListener>,
    stop: &Flag,
) -> Vec<tokio::task::JoinHandle<()>> {
    match listener {
        None => vec![
            tokio::spawn(run_slave(broker.clone(), stop.clone())),
            tokio::spawn(super::slave_sync::run(broker.clone(), stop.clone())),
        ],
        Some(listener) => {
            tracing::info!(ha_addr = %broker.ha_addr, "listening for slaves");
            vec![
                tokio::spawn(super::schedule::run(broker.clone(), stop.clone())),
                tokio::spawn(serve_master(broker.clone(), listener, stop.clone())),
            ]
        }
    }
}

/// Accepts slaves on the HA port until `stop`.
pub(super) async fn serve_master(broker: Arc<Broker>, listener: TcpListener, stop: Flag) {
    let mut next_slave = 1u64;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let slave = next_slave;
                next_slave += 1;
                tracing::info!(%peer, slave, "slave connected to the HA port");
                tokio::spawn(master_link(broker.clone(), stream, slave, stop.clone()));
            }
            Err(error) => {
                tracing::warn!(%error, "HA accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn master_config(broker: &Broker) -> MasterConfig {
    let config = &broker.config;
    MasterConfig {
        file_bytes: config.store.commit_log_file_bytes,
        batch_bytes: config.ha_transfer_batch_bytes,
        heartbeat_ms: config.ha_heartbeat_ms,
        housekeeping_ms: config.ha_housekeeping_ms,
    }
}

/// One slave's connection: its reports in, the commit log out.
async fn master_link(broker: Arc<Broker>, stream: TcpStream, slave: u64, stop: Flag) {
    // However the link ends, the slave's acks count no more.
    let _gone = ReplicaGone { broker: broker.clone(), slave };
    let (reader, mut writer) = split(stream);
    // The reports are read on their own task, so that a slave blocked sending one never
    // waits on a master blocked sending it frames.
    let (reports, mut reported) = tokio::sync::mpsc::channel(16);
    let _reading = AbortOnDrop(tokio::spawn(read_reports(reader, reports, slave)));
    // Only durable bytes go to slaves: a power loss cannot take back what a slave holds
    // (docs/decisions/0003-replicate-durable-bytes-only.md).
    let durable = broker.store.durable();
    let mut core = HaMaster::new(master_config(&broker), durable.get());
    core.handle(now_millis(), MasterEvent::Connected { slave });
    let mut known_end = durable.get();
    loop {
        while let Some(action) = core.poll_action() {
            let sent = match action {
                MasterAction::Transfer { from, size, .. } => {
                    let Some(data) = broker.store.store().read_at(from, size) else {
                        tracing::warn!(slave, from, size, "the log to send is gone; closing");
                        return;
                    };
                    send_frame(&mut writer, from, &data).await
                }
                MasterAction::Heartbeat { offset, .. } => {
                    send_frame(&mut writer, offset, &[]).await
                }
                MasterAction::Close { why, .. } => {
                    tracing::warn!(slave, %why, "closing a slave's HA connection");
                    return;
                }
                MasterAction::ReplicaAcked { offset, .. } => {
                    broker.store.replica_acked(slave, offset);
                    continue;
                }
                MasterAction::ReplicaGone { .. } => return,
            };
            if let Err(error) = sent {
                tracing::info!(slave, %error, "slave's HA connection lost");
                return;
            }
            core.handle(now_millis(), MasterEvent::Sent { slave });
        }
        core.check_invariants();
        let deadline = core.poll_timeout();
        let seen = known_end;
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            report = reported.recv() => match report {
                Some(offset) => core.handle(now_millis(), MasterEvent::Reported { slave, offset }),
                None => return,
            },
            _ = durable.wait_for(move |end| end > seen) => {
                known_end = durable.get();
                core.handle(now_millis(), MasterEvent::Appended { end: known_end });
            }
            () = until(deadline) => core.tick(now_millis()),
        }
    }
}

/// Reads a slave's reports until its connection ends, passing on each newest one.
async fn read_reports(
    mut reader: impl AsyncRead + Unpin,
    reports: tokio::sync::mpsc::Sender<u64>,
    slave: u64,
) {
    let mut decoder = ReportDecoder::default();
    let mut buffer = vec![0u8; 4096];
    loop {
        let n = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                tracing::info!(slave, "slave closed its HA connection");
                return;
            }
            Ok(n) => n,
        };
        match decoder.feed(&buffer[..n]) {
            Ok(Some(offset)) => {
                if reports.send(offset).await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(slave, %error, "malformed report from a slave; closing");
                return;
            }
        }
    }
}

/// Ends a helper task with the link it serves.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct ReplicaGone {
    broker: Arc<Broker>,
    slave: u64,
}

impl Drop for ReplicaGone {
    fn drop(&mut self) {
        self.broker.store.replica_gone(self.slave);
    }
}

async fn send_frame(
    writer: &mut (impl AsyncWrite + Unpin),
    offset: u64,
    data: &[u8],
) -> std::io::Result<()> {
    writer.write_all(&encode_transfer_header(offset, data.len() as u32)).await?;
    writer.write_all(data).await?;
    writer.flush().await
}

/// A slave's connection to its master, kept up until `stop`.
pub(super) async fn run_slave(broker: Arc<Broker>, stop: Flag) {
    loop {
        match broker.ha_master() {
            Some(master) => {
                let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&master));
                match connect.await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        tracing::info!(%master, "connected to the master's HA port");
                        slave_link(&broker, stream, &stop).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%master, %error, "cannot reach the master"),
                    Err(_) => tracing::debug!(%master, "connecting to the master timed out"),
                }
            }
            None => {
                // The NameServer names the master only while it is registered: ask again
                // now rather than at the next registration period.
                tracing::debug!("no master HA address yet; registering again");
                broker.register_now.notify_one();
            }
        }
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(RECONNECT_DELAY) => {}
        }
    }
}

fn slave_config(broker: &Broker) -> SlaveConfig {
    let config = &broker.config;
    let record_bytes_max = 2 * config.store.message_bytes_max as u64 + RECORD_OVERHEAD_BYTES;
    SlaveConfig {
        file_bytes: config.store.commit_log_file_bytes,
        record_bytes_max,
        heartbeat_ms: config.ha_heartbeat_ms,
        housekeeping_ms: config.ha_housekeeping_ms,
    }
}

/// One connection to the master: frames in, appended and reported.
async fn slave_link(broker: &Arc<Broker>, stream: TcpStream, stop: &Flag) {
    let (reader, mut writer) = split(stream);
    // Frames are read on their own task, so that the master, blocked sending them, always
    // gets this slave's reports read in turn.
    let (frames, mut received) = tokio::sync::mpsc::channel(64);
    let _reading = AbortOnDrop(tokio::spawn(read_frames(reader, frames)));
    let mut core = HaSlave::new(slave_config(broker), broker.store.store().written_offset());
    core.handle(now_millis(), SlaveEvent::Connected);
    loop {
        while let Some(action) = core.poll_action() {
            match action {
                SlaveAction::Report { offset } => {
                    let sent = async {
                        writer.write_all(&encode_report(offset)).await?;
                        writer.flush().await
                    };
                    if let Err(error) = sent.await {
                        tracing::info!(%error, "lost the master's HA connection");
                        return;
                    }
                }
                SlaveAction::Append { offset, records } => {
                    match broker.store.append_replicated(offset, &records) {
                        Ok(end) => core.handle(now_millis(), SlaveEvent::Appended { end }),
                        Err(error) => {
                            tracing::error!(%error, offset, "cannot append what the master sent");
                            return;
                        }
                    }
                }
                SlaveAction::Close { why } => {
                    tracing::warn!(%why, "closing the master's HA connection");
                    return;
                }
            }
        }
        core.check_invariants();
        let deadline = core.poll_timeout();
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            frame = received.recv() => match frame {
                Some(frame) => core.handle(now_millis(), SlaveEvent::Received(frame)),
                None => return,
            },
            () = until(deadline) => core.tick(now_millis()),
        }
    }
}

/// Reads the master's frames until the connection ends or a frame is malformed.
async fn read_frames(
    mut reader: impl AsyncRead + Unpin,
    frames: tokio::sync::mpsc::Sender<petrel_core::ha::codec::Transfer>,
) {
    let mut decoder = TransferDecoder::default();
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                tracing::info!("the master closed the HA connection");
                return;
            }
            Ok(n) => decoder.feed(&buffer[..n]),
        }
        loop {
            match decoder.next_frame() {
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
