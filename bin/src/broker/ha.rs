//! Replication's shells (`docs/replication.md`, and `docs/failover.md` for controller mode):
//! the master's HA listener, one task per slave driving a `HaMaster` core; the slave's side is
//! in `ha_slave.rs`. The cores decide; these read and write the sockets and the store.
//!
//! In controller mode every broker listens on its HA port, serves slaves only while it is the
//! master, follows its master only while it is a slave, and speaks the AutoSwitch frames; a
//! role change ends the links of the old role (`Broker::term`).

use std::sync::Arc;
use std::time::Duration;

use petrel_core::ha::autoswitch::{self, FromSlave, MasterHello};
use petrel_core::ha::codec::{encode_transfer_header, ReportDecoder};
use petrel_core::ha::epoch::{EpochCache, EpochEntry};
use petrel_core::ha::master::{HaMaster, MasterAction, MasterConfig, MasterEvent};
use petrel_core::Millis;
use petrel_net::signal::Flag;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::config::{BrokerConfig, BrokerRole};
use super::Broker;
use crate::clock::now_millis;

/// How long a slave waits before connecting again (RocketMQ waits 5 s; a shorter wait loses
/// less time after a master restart and costs one connection attempt a second).
pub(super) const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Sleeps until `at` (the broker clock's milliseconds), or for ever when there is nothing due.
pub(super) async fn until(at: Option<Millis>) {
    match at {
        Some(at) => {
            tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_millis()))).await
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(madsim))]
pub(super) fn split(
    stream: TcpStream,
) -> (impl AsyncRead + Unpin + Send + 'static, impl AsyncWrite + Unpin + Send + 'static) {
    stream.into_split()
}

#[cfg(madsim)]
pub(super) fn split(
    stream: TcpStream,
) -> (impl AsyncRead + Unpin + Send + 'static, impl AsyncWrite + Unpin + Send + 'static) {
    tokio::io::split(stream)
}

/// A master's HA listener on `bindAddress:haListenPort`, and the port slaves are told; a
/// slave has none.
pub(super) async fn bind(config: &BrokerConfig) -> Result<(Option<TcpListener>, u16), String> {
    // In controller mode any broker may become the master.
    if config.role == BrokerRole::Slave && config.controller.is_none() {
        return Ok((None, config.ha_port()));
    }
    let ha_bind = format!("{}:{}", config.bind_address, config.ha_port());
    let listener = TcpListener::bind(&ha_bind)
        .await
        .map_err(|e| format!("cannot listen for slaves on {ha_bind}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    Ok((Some(listener), port))
}

/// The role's tasks: a master serves its slaves, delivers delayed messages and checks
/// transactions; a slave follows its master's log, copies its configuration and follows its
/// timer wheel (and re-puts nothing: its log is its master's).
pub(super) fn spawn(
    broker: &Arc<Broker>,
    listener: Option<TcpListener>,
    stop: &Flag,
) -> Vec<tokio::task::JoinHandle<()>> {
    if broker.config.controller.is_some() {
        let listener = listener.expect("controller mode listens");
        return vec![
            tokio::spawn(serve_master(broker.clone(), listener, stop.clone())),
            tokio::spawn(super::ha_slave::run(broker.clone(), stop.clone())),
            tokio::spawn(super::slave_sync::run(broker.clone(), stop.clone())),
            tokio::spawn(deliver_while_master(broker.clone(), stop.clone())),
        ];
    }
    match listener {
        None => vec![
            tokio::spawn(super::ha_slave::run(broker.clone(), stop.clone())),
            tokio::spawn(super::slave_sync::run(broker.clone(), stop.clone())),
            tokio::spawn(super::timer::follow(broker.clone(), stop.clone())),
        ],
        Some(listener) => {
            tracing::info!(ha_addr = %broker.ha_addr, "listening for slaves");
            vec![
                tokio::spawn(super::schedule::run(broker.clone(), stop.clone())),
                tokio::spawn(super::timer::run(broker.clone(), stop.clone())),
                tokio::spawn(super::transaction_check::run(broker.clone(), stop.clone())),
                tokio::spawn(super::revive::run(broker.clone(), stop.clone())),
                tokio::spawn(serve_master(broker.clone(), listener, stop.clone())),
            ]
        }
    }
}

/// Controller mode: delayed messages are delivered, and transactions checked, by the master
/// only, from each time it becomes master until its role changes; meanwhile a slave's timer
/// wheel follows its master's.
async fn deliver_while_master(broker: Arc<Broker>, stop: Flag) {
    loop {
        let term = broker.term();
        if broker.is_master() {
            let role = either(&stop, &term);
            tokio::join!(
                super::schedule::run(broker.clone(), role.clone()),
                super::timer::run(broker.clone(), role.clone()),
                super::transaction_check::run(broker.clone(), role.clone()),
                super::revive::run(broker.clone(), role),
            );
        } else {
            let role = either(&stop, &term);
            super::timer::follow(broker.clone(), role.clone()).await;
            role.wait().await;
        }
        if stop.is_set() {
            return;
        }
    }
}

/// A flag set once `a` or `b` is.
pub(super) fn either(a: &Flag, b: &Flag) -> Flag {
    let both = Flag::new();
    let (a, b, set) = (a.clone(), b.clone(), both.clone());
    tokio::spawn(async move {
        tokio::select! {
            biased;
            _ = a.wait() => {}
            _ = b.wait() => {}
        }
        set.set();
    });
    both
}

/// Accepts slaves on the HA port until `stop`; in controller mode, serves them only while
/// this broker is the master.
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
                let term = broker.term();
                if broker.config.controller.is_some() && !broker.is_master() {
                    tracing::debug!(%peer, "an HA connection to a broker that is not master; closed");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let slave = next_slave;
                next_slave += 1;
                tracing::info!(%peer, slave, "slave connected to the HA port");
                let (stop, term) = (stop.clone(), term.clone());
                tokio::spawn(master_link(broker.clone(), stream, slave, stop, term));
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
        auto_switch: config.controller.is_some(),
    }
}

/// One slave's connection as the master sees it: the connection (`conn`), and in controller
/// mode the broker id its hello named.
struct Follower {
    broker: Arc<Broker>,
    conn: u64,
    id: Option<i64>,
    /// The master's epochs, as last given to the core.
    epochs: EpochCache,
}

impl Follower {
    fn auto_switch(&self) -> bool {
        self.broker.config.controller.is_some()
    }

    fn acked(&self, offset: u64) {
        match (self.auto_switch(), self.id) {
            (false, _) => self.broker.store.replica_acked(self.conn, offset),
            (true, Some(id)) => {
                self.broker.change_replicas(|r| r.slave_acked(now_millis(), id, self.conn, offset));
            }
            (true, None) => {}
        }
    }

    /// The epoch of the bytes at `offset` (or, at the log's end, the newest).
    fn epoch_at(&self, offset: u64, end: u64) -> EpochEntry {
        let found = self.epochs.epoch_of(offset as i64, end as i64).or(self.epochs.last());
        found.unwrap_or(EpochEntry { epoch: 0, start: 0 })
    }

    /// Controller mode: tells the core of a new epoch, and the role core how far the log is.
    fn log_moved(&mut self, core: &mut HaMaster, end: u64) {
        if !self.auto_switch() {
            return;
        }
        let store = self.broker.store();
        if store.last_epoch() != self.epochs.last() {
            self.epochs = store.epoch_cache();
            let min = store.min_physical_offset();
            core.handle(now_millis(), MasterEvent::Log { min, epochs: self.epochs.clone() });
        }
        let (confirmed, start) =
            (store.confirm_offset(), self.epochs.last().map_or(0, |e| e.start));
        self.broker.change_replicas(|r| r.log(end, confirmed, start as u64));
    }
}

impl Drop for Follower {
    /// However the link ends, the slave's acks count no more.
    fn drop(&mut self) {
        match (self.id, self.auto_switch()) {
            (Some(id), _) => {
                self.broker.change_replicas(|r| r.slave_gone(id, self.conn));
            }
            // In controller mode the confirm machine counts broker ids, not connections.
            (None, true) => {}
            (None, false) => self.broker.store.replica_gone(self.conn),
        }
    }
}

/// One slave's connection: its reports in, the commit log out; until `stop`, or until the
/// role's `term` ends.
async fn master_link(broker: Arc<Broker>, stream: TcpStream, slave: u64, stop: Flag, term: Flag) {
    let mut follower =
        Follower { broker: broker.clone(), conn: slave, id: None, epochs: EpochCache::default() };
    let (reader, mut writer) = split(stream);
    // The reports are read on their own task, so that a slave blocked sending one never
    // waits on a master blocked sending it frames.
    let (reports, mut reported) = tokio::sync::mpsc::channel(16);
    let auto_switch = follower.auto_switch();
    let _reading = AbortOnDrop(tokio::spawn(read_reports(reader, reports, slave, auto_switch)));
    // Only durable bytes go to slaves: a power loss cannot take back what a slave holds
    // (docs/decisions/0003-replicate-durable-bytes-only.md).
    let durable = broker.store.durable();
    let mut core = HaMaster::new(master_config(&broker), durable.get());
    core.handle(now_millis(), MasterEvent::Connected { slave });
    let mut known_end = durable.get();
    follower.log_moved(&mut core, known_end);
    loop {
        while let Some(action) = core.poll_action() {
            match carry_out(&mut follower, &mut writer, action, known_end).await {
                Ok(true) => core.handle(now_millis(), MasterEvent::Sent { slave }),
                Ok(false) => {}
                Err(why) => {
                    tracing::info!(slave, %why, "slave's HA connection ends");
                    return;
                }
            }
        }
        core.check_invariants();
        let deadline = core.poll_timeout();
        let seen = known_end;
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            _ = term.wait() => return,
            report = reported.recv() => match report {
                Some(FromSlave::Report(offset)) => {
                    core.handle(now_millis(), MasterEvent::Reported { slave, offset })
                }
                Some(FromSlave::Hello(hello)) => {
                    follower.id = Some(hello.broker_id as i64);
                    let (id, learner) = (hello.broker_id as i64, hello.async_learner);
                    broker.change_replicas(|r| r.slave_connected(now_millis(), id, slave, learner));
                    core.handle(now_millis(), MasterEvent::Hello { slave, hello });
                }
                None => return,
            },
            _ = durable.wait_for(move |end| end > seen) => {
                known_end = durable.get();
                follower.log_moved(&mut core, known_end);
                core.handle(now_millis(), MasterEvent::Appended { end: known_end });
            }
            () = until(deadline) => core.tick(now_millis()),
        }
    }
}

/// Carries out one of the core's actions: `Ok(true)` when a frame was written (the core is
/// told `Sent`), `Err` when the link is over.
async fn carry_out(
    follower: &mut Follower,
    writer: &mut (impl AsyncWrite + Unpin),
    action: MasterAction,
    end: u64,
) -> Result<bool, String> {
    let broker = &follower.broker;
    let epoch_and_confirm = |offset: u64| {
        follower
            .auto_switch()
            .then(|| (follower.epoch_at(offset, end), broker.store().confirm_offset()))
    };
    let sent = match action {
        MasterAction::Transfer { from, size, .. } => {
            let Some(data) = broker.store.store().read_at(from, size) else {
                return Err(format!("the log to send ({size} bytes from {from}) is gone"));
            };
            send_frame(writer, from, &data, epoch_and_confirm(from)).await
        }
        MasterAction::Heartbeat { offset, .. } => {
            send_frame(writer, offset, &[], epoch_and_confirm(offset)).await
        }
        MasterAction::Answer { end, .. } => {
            let mut epochs = follower.epochs.clone();
            epochs.truncate_suffix(end as i64 + 1);
            // The epoch this master writes in begins at its end, records or not yet (RocketMQ
            // appends it when the broker becomes master): a slave compares epochs with it.
            let current = broker.store.epoch() as i32;
            if epochs.last_epoch().is_none_or(|last| last < current) {
                let _ = epochs.append(current, end as i64);
            }
            let mut frame = Vec::new();
            autoswitch::encode_master_hello(&MasterHello { end, epochs }, &mut frame);
            async {
                writer.write_all(&frame).await?;
                writer.flush().await
            }
            .await
        }
        MasterAction::Close { why, .. } => return Err(why),
        MasterAction::ReplicaAcked { offset, .. } => {
            follower.acked(offset);
            return Ok(false);
        }
        MasterAction::ReplicaGone { .. } => return Err("the slave is gone".into()),
    };
    sent.map(|()| true).map_err(|error| format!("lost: {error}"))
}

/// Reads a slave's frames until its connection ends, passing each on: on the classic port,
/// the newest report of what arrived; in controller mode, each hello and report.
async fn read_reports(
    mut reader: impl AsyncRead + Unpin,
    reports: tokio::sync::mpsc::Sender<FromSlave>,
    slave: u64,
    auto_switch: bool,
) {
    let mut classic = ReportDecoder::default();
    let mut decoder = autoswitch::Decoder::default();
    let mut buffer = vec![0u8; 4096];
    loop {
        let n = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                tracing::info!(slave, "slave closed its HA connection");
                return;
            }
            Ok(n) => n,
        };
        let mut frames = Vec::new();
        let read: Result<(), String> = match auto_switch {
            false => match classic.feed(&buffer[..n]) {
                Ok(newest) => {
                    frames.extend(newest.map(FromSlave::Report));
                    Ok(())
                }
                Err(error) => Err(error.to_string()),
            },
            true => {
                decoder.feed(&buffer[..n]);
                loop {
                    match decoder.from_slave() {
                        Ok(Some(frame)) => frames.push(frame),
                        Ok(None) => break Ok(()),
                        Err(error) => break Err(error.to_string()),
                    }
                }
            }
        };
        for frame in frames {
            if reports.send(frame).await.is_err() {
                return;
            }
        }
        if let Err(error) = read {
            tracing::warn!(slave, %error, "malformed frame from a slave; closing");
            return;
        }
    }
}

/// Ends a helper task with the link it serves.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A transfer frame: classic, or with its epoch and the confirm offset in controller mode.
async fn send_frame(
    writer: &mut (impl AsyncWrite + Unpin),
    offset: u64,
    data: &[u8],
    auto_switch: Option<(EpochEntry, u64)>,
) -> std::io::Result<()> {
    let size = data.len() as u32;
    match auto_switch {
        Some((epoch, confirm)) => {
            let header = autoswitch::encode_transfer_header(offset, size, epoch, confirm);
            writer.write_all(&header).await?
        }
        None => writer.write_all(&encode_transfer_header(offset, size)).await?,
    }
    writer.write_all(data).await?;
    writer.flush().await
}
