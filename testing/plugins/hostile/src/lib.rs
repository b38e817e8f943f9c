//! A poller that misbehaves in the way its `mode` parameter names, so the
//! host's sandbox can be tested against the real runtime.

use dispatch_poller_sdk::{Action, Context, Info, ParamSpec, ParamType, Poller, export_poller};

pub struct Hostile;

impl Poller for Hostile {
    fn describe() -> Info {
        Info::new("hostile", "0.1.0", "Misbehaves on request (tests only).").param(ParamSpec::new(
            "mode",
            ParamType::Text,
            Some("ok"),
            "ok, loop, panic, trap, oom, absolute, dotdot, symlink, list-escape, stderr",
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
            other => Err(format!("unknown mode `{other}`")),
        }
    }
}

/// A bare `unreachable` instruction (no panic message).
fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

export_poller!(Hostile);
