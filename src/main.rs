//! sluice: a realtime media server. This file is the process: command line, config, logging,
//! the worker threads, signals and shutdown.

mod config;
mod control;
mod framing;
mod hls;
mod hub;
mod remux;
mod request;
mod rtc;
mod security;
mod session;
mod static_files;
mod transcode;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use sluice_ring::{Backend, Driver, DriverConfig};

use config::{Config, IoChoice, LogFormat};
use worker::{Listeners, Shared, Worker, WorkerLink};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Realtime media server (RTMP) on io_uring/epoll"
)]
struct Cli {
    /// Config file (TOML).
    #[arg(short = 'c', long = "config", default_value = "conf/sluice.toml")]
    config: PathBuf,
    /// Check the config file and exit: 0 if valid, 1 with FILE:LINE: key: problem if not.
    #[arg(short = 't', long = "test-config")]
    test_config: bool,
    /// I/O backend, overriding the config's `io`: auto, uring or epoll.
    #[arg(long)]
    io: Option<IoChoice>,
    /// Worker threads, overriding the config's `workers` (0 = one per core).
    #[arg(long)]
    workers: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.test_config {
        println!("sluice: {}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    if let Some(io) = cli.io {
        config.io = io;
    }
    if let Some(workers) = cli.workers {
        config.workers = workers;
    }
    init_logging(&config);
    // WebRTC's DTLS and SRTP use aws-lc through str0m: chosen once for the process.
    str0m::crypto::from_feature_flags().install_process_default();
    match run(config, &cli.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        // srt-protocol logs every connection's shutdown at info and every undecodable datagram
        // at warn (a flood of junk would flood the log); our own log lines name the peer and the
        // reason for what matters, so the crate is kept to errors unless SLUICE_LOG asks for more.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{},srt_protocol=error", config.log.level))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn choose_backend(choice: IoChoice) -> Result<Backend, String> {
    match choice {
        IoChoice::Epoll => Ok(Backend::Epoll),
        IoChoice::Uring => sluice_ring::uring_support()
            .map(|()| Backend::Uring)
            .map_err(|why| format!("io = uring was asked for, but {why}")),
        IoChoice::Auto => {
            let (backend, why) = Backend::detect();
            if let Some(why) = why {
                tracing::info!("io_uring not used: {why}");
            }
            Ok(backend)
        }
    }
}

fn run(config: Config, path: &std::path::Path) -> Result<(), String> {
    let backend = choose_backend(config.io)?;
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let listen = config.rtmp_listen();
    let http_listen = config.http_listen();
    let srt_listen = config.srt_listen();
    let rtc_listen = config.rtc_listen();
    let udp_gso = config.udp_gso && std::env::var("SLUICE_UDP_GSO").map_or(true, |v| v != "0");

    // Each worker creates its driver and listener on its own thread (io_uring rings are
    // single-issuer), reports its waker, then waits for the shared state that needs them all.
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut shared_txs = Vec::new();
    let mut threads = Vec::new();
    for id in 0..workers {
        let ready_tx = ready_tx.clone();
        let (shared_tx, shared_rx) = mpsc::channel::<Arc<Shared>>();
        shared_txs.push(shared_tx);
        let thread = std::thread::Builder::new()
            .name(format!("sluice-w{id}"))
            .spawn(move || {
                let setup =
                    Driver::new(backend, &DriverConfig::default()).and_then(|mut driver| {
                        let rtmp = driver.listen(listen)?;
                        let http = http_listen.map(|addr| driver.listen(addr)).transpose()?;
                        let srt = srt_listen.map(|addr| driver.bind_udp(addr)).transpose()?;
                        let rtc = rtc_listen.map(|addr| driver.bind_udp(addr)).transpose()?;
                        driver.set_udp_gso(udp_gso && driver.udp_gso());
                        let listeners = Listeners {
                            rtmp,
                            http,
                            srt,
                            rtc,
                        };
                        Ok((driver, listeners))
                    });
                let (driver, listeners) = match setup {
                    Ok(ok) => ok,
                    Err(e) => {
                        let _ = ready_tx.send((id, Err(e.to_string())));
                        return;
                    }
                };
                let _ = ready_tx.send((id, Ok(driver.waker())));
                let Ok(shared) = shared_rx.recv() else { return };
                Worker::new(id, driver, listeners, shared).run();
            })
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        threads.push(thread);
    }
    drop(ready_tx);
    let mut wakers = vec![None; workers];
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok((id, Ok(waker))) => wakers[id] = Some(waker),
            Ok((id, Err(e))) => {
                return Err(format!("worker {id}: cannot listen: {e}"));
            }
            Err(_) => return Err("a worker thread died during start-up".into()),
        }
    }
    let links = wakers
        .into_iter()
        .map(|w| WorkerLink::new(w.expect("every worker reported")))
        .collect();
    let (hooks_tx, hooks_rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared::new(config, backend, links, hooks_tx));
    // The control plane binds its port before the workers start serving, so a bad
    // http_api.listen stops the start-up.
    let _control = control::start(shared.clone(), hooks_rx)?;
    for tx in shared_txs {
        let _ = tx.send(shared.clone());
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %path.display(),
        rtmp = %listen,
        http = %http_listen.map_or("off".to_string(), |a| a.to_string()),
        srt = %srt_listen.map_or("off".to_string(), |a| a.to_string()),
        udp_gso,
        api = %shared.config.api_listen().map_or("off".to_string(), |a| a.to_string()),
        workers,
        io = %backend,
        "sluice started"
    );

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("cannot install signal handler: {e}"))?;
    }
    while !stop.load(Ordering::SeqCst) {
        if threads.iter().any(|t| t.is_finished()) {
            shared.shutdown();
            for thread in threads {
                let _ = thread.join();
            }
            return Err("a worker stopped unexpectedly; shutting down".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("signal received; shutting down");
    shared.shutdown();
    for thread in threads {
        let _ = thread.join();
    }
    tracing::info!("sluice stopped");
    Ok(())
}
