//! A poller that misbehaves in the way its `mode` parameter names, so the
//! host's sandbox can be tested against the real runtime.

use dispatch_poller_sdk::{
    Action, Context, Info, Level, ParamSpec, ParamType, Poller, export_poller,
};

pub struct Hostile;

impl Poller for Hostile {
    fn describe() -> Info {
        Info::new("hostile", "0.1.0", "Misbehaves on request (tests only).")
            .param(ParamSpec::new(
                "mode",
                ParamType::Text,
                Some("ok"),
                "ok, loop, panic, trap, oom, absolute, dotdot, symlink, list-escape, stderr, read, read-loop, sleep, sleep-spin, block-instant, poll-zero, log-flood",
            ))
            .param(ParamSpec::new("path", ParamType::Text, Some(""), "What `read` reads"))
            .param(ParamSpec::new(
                "max_bytes",
                ParamType::Integer,
                Some("1048576"),
                "What `read` allows",
            ))
    }

    fn poll(ctx: &Context) -> Result<Vec<Action>, String> {
        match ctx.params().text("mode")? {
            "ok" => Ok(ctx
                .files_of("")?
                .into_iter()
                .map(|f| Action::transfer_file(f.name))
                .collect()),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "panic" => panic!("hostile plugin panicked on purpose"),
            "trap" => trap(),
            "oom" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hog);
                }
            }
            "absolute" => Ok(vec![Action::transfer_file("/etc/passwd")]),
            "dotdot" => Ok(vec![Action::transfer_file("a/../../outside.txt")]),
            "symlink" => Ok(vec![Action::transfer_file("escape/secret.txt")]),
            "list-escape" => ctx.list("escape").map(|_| Vec::new()),
            "stderr" => {
                eprintln!("hello from the plugin's stderr");
                Ok(Vec::new())
            }
            // Success shows as a marker named for the bytes read.
            "read" => {
                let bytes = read(ctx)?;
                Ok(vec![Action::touch(format!("read-{}", bytes.len()))])
            }
            "read-loop" => {
                for n in 0.. {
                    if let Err(e) = read(ctx) {
                        return Err(format!("after {n} reads: {e}"));
                    }
                }
                Ok(Vec::new())
            }
            // A forged record, a huge one, then a flood (stdout too).
            "log-flood" => {
                ctx.log(
                    Level::Warn,
                    "line one\n2026-11-30T00:00:00.000000Z ERROR dispatch_agent: forged record",
                );
                ctx.log(Level::Warn, &"x".repeat(1 << 20));
                for i in 0..100_000 {
                    ctx.log(Level::Warn, &format!("flood {i}"));
                }
                println!("stdout after the flood");
                Ok(Vec::new())
            }
            // Waits in the host, through WASI's clock, not in wasm.
            "sleep" => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            "sleep-spin" => loop {
                std::thread::sleep(std::time::Duration::from_nanos(1));
            },
            "block-instant" => loop {
                wasi_wait(Wait::BlockInstant);
            },
            "poll-zero" => loop {
                wasi_wait(Wait::PollZero);
            },
            other => Err(format!("unknown mode `{other}`")),
        }
    }
}

fn read(ctx: &Context) -> Result<Vec<u8>, String> {
    let max = u32::try_from(ctx.params().integer("max_bytes")?).map_err(|e| e.to_string())?;
    ctx.read_file(ctx.params().text("path")?, max)
}

enum Wait {
    /// An hour from now by `subscribe-instant`, then `pollable.block`.
    BlockInstant,
    /// `poll` of a zero-duration `subscribe-duration`.
    PollZero,
}

#[cfg(target_arch = "wasm32")]
fn wasi_wait(wait: Wait) {
    use wasip2::clocks::monotonic_clock;
    match wait {
        Wait::BlockInstant => {
            monotonic_clock::subscribe_instant(monotonic_clock::now() + 3_600_000_000_000).block()
        }
        Wait::PollZero => {
            let p = monotonic_clock::subscribe_duration(0);
            let _ = wasip2::io::poll::poll(&[&p]);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn wasi_wait(_: Wait) {}

/// A bare `unreachable` instruction (no panic message).
fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

export_poller!(Hostile);
