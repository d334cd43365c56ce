//! A tiny request/reply protocol tested in udsim's simulated world, with a fault injected.
//!
//! The server answers each 4-byte request `qNNN` with `rNNN`. Three clients each send one
//! request and wait for the reply; the third aborts (closes before reading its reply). Every
//! seed is one interleaving: the run is repeated over 50 seeds, each time checking that the
//! polite clients got their replies, and each trace is replayed on the kernel by the checker.
//!
//! `cargo run --example request_reply` (Linux; the first check calibrates the model).

use std::path::Path;
use udsim::check::{describe, Checker, Options};
use udsim::net::{Listener, Net, Stream};
use udsim::sim::{SimListener, SimNet, SimStream, Step, Task, World};

const PATH: &str = "rr.sock";

/// Accepts, reads one request per connection, writes the reply, closes.
struct Server {
    listener: SimListener,
    conns: Vec<SimStream>,
}

impl Task for Server {
    fn step(&mut self, _net: &SimNet, _now: u64) -> Step {
        let mut progress = false;
        if let Ok(c) = self.listener.accept() {
            self.conns.push(c);
            progress = true;
        }
        let mut i = 0;
        while i < self.conns.len() {
            let mut req = [0u8; 4];
            match self.conns[i].recv(&mut req) {
                Ok(4) if req[0] == b'q' => {
                    req[0] = b'r';
                    // A peer that aborted gives EPIPE here: nothing to do but close.
                    let _ = self.conns[i].send(&req);
                    self.conns.swap_remove(i);
                    progress = true;
                    continue;
                }
                // End of stream, a reset or a malformed request: close.
                Ok(_) | Err(nix::errno::Errno::ECONNRESET) => {
                    self.conns.swap_remove(i);
                    progress = true;
                    continue;
                }
                Err(_) => {}
            }
            i += 1;
        }
        if progress {
            Step::Progress
        } else {
            Step::Blocked
        }
    }
    fn daemon(&self) -> bool {
        true
    }
}

/// Sends `qNNN`, waits for `rNNN` (or, aborting, closes right after sending).
struct Client {
    id: u16,
    abort: bool,
    sock: Option<SimStream>,
    reply: Option<Vec<u8>>,
}

impl Task for Client {
    fn step(&mut self, net: &SimNet, _now: u64) -> Step {
        let Some(s) = &self.sock else {
            return match net.connect(Path::new(PATH)) {
                Ok(s) => {
                    let req = format!("q{:03}", self.id);
                    if s.send(req.as_bytes()) != Ok(4) {
                        return Step::Done;
                    }
                    if self.abort {
                        return Step::Done; // `s` is dropped: closed before the reply
                    }
                    self.sock = Some(s);
                    Step::Progress
                }
                Err(_) => Step::Blocked,
            };
        };
        let mut buf = [0u8; 8];
        match s.recv(&mut buf) {
            Ok(n) => {
                self.reply = Some(buf[..n].to_vec());
                self.sock = None;
                Step::Done
            }
            Err(nix::errno::Errno::EAGAIN) => Step::Blocked,
            Err(_) => {
                self.reply = Some(Vec::new());
                Step::Done
            }
        }
    }
}

fn main() {
    let mut checker = Checker::new().expect("an executor (Linux)");
    let params = checker.params().clone();
    for seed in 0..50 {
        let mut world = World::new(params.clone(), seed);
        let mut server = Server {
            listener: world.net().listen(Path::new(PATH), 16).expect("listen"),
            conns: Vec::new(),
        };
        let mut clients: Vec<Client> = (0..3)
            .map(|id| Client {
                id,
                abort: id == 2,
                sock: None,
                reply: None,
            })
            .collect();
        {
            let mut tasks: Vec<&mut dyn Task> = vec![&mut server];
            for c in &mut clients {
                tasks.push(c);
            }
            world.run(&mut tasks).expect("the run finishes");
        }
        drop(server);
        for c in clients.iter().filter(|c| !c.abort) {
            let want = format!("r{:03}", c.id).into_bytes();
            assert_eq!(
                c.reply.as_deref(),
                Some(&want[..]),
                "seed {seed}, client {}",
                c.id
            );
        }
        let run = checker
            .run(&world.trace(), Options::default())
            .expect("the checker runs");
        assert!(run.fully_agrees(), "seed {seed}:\n{}", describe(&run));
        println!(
            "seed {seed:2}: {:3} calls, the kernel agrees",
            world.calls()
        );
    }
}
