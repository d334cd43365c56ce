//! The in-flight garbage collector, and the states it leaves the kernel in.
//!
//! Sockets referenced only by SCM_RIGHTS copies queued at sockets that are themselves referenced only that way
//! (a socket sent over itself, two sockets sent to each other) are garbage: no call can reach them. Linux frees
//! them in its collector, which a release of *any* AF_UNIX socket on the machine schedules, and which runs on a
//! work queue (6.18, 6.12) or at once (6.1). No script controls either: another process closing a socket
//! triggers it, and the work runs when the scheduler lets it. Measured on the kernel (scenarios 404 and 417–420):
//! closing the last descriptor of a cycle leaves it uncollected for as long as nothing else is released, and a
//! blocking wait after the script releases a socket usually, not always, sees it collected.
//!
//! So from the moment garbage exists, the model holds every state the kernel may be in: the primary state
//! (nothing collected yet) and the states in which the collector ran before one of the later calls. A call's
//! prediction is the union of what each state predicts, and `Model::observe` keeps the states that allow what
//! the kernel returned. Once the collector is seen to have run, one state remains and predictions are exact
//! again.

use super::{Model, Prediction, SockId};

/// At most this many states at once; past it the model stops saying (a script would need a long run of calls
/// that touch garbage without ever showing whether it was collected).
const MAX_STATES: usize = 16;

impl Model {
    /// Sockets that are garbage: open, with copies in flight, and unreachable from any descriptor (roots are the
    /// sockets with more references than copies in flight; a socket's queue, and a listener's embryos' queues,
    /// reach the sockets in flight in them).
    pub(super) fn garbage(&self) -> Vec<SockId> {
        let mut inflight = vec![0usize; self.socks.len()];
        let mut any = false;
        for s in &self.socks {
            for k in &s.rx {
                for &f in &k.fds {
                    inflight[f] += 1;
                    any = true;
                }
            }
        }
        if !any {
            return Vec::new();
        }
        let mut reached = vec![false; self.socks.len()];
        let mut stack: Vec<SockId> = (0..self.socks.len())
            .filter(|&i| !self.socks[i].released && self.socks[i].refs > inflight[i])
            .collect();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut reached[i], true) {
                continue;
            }
            let s = &self.socks[i];
            // Embryos are held by their listener.
            stack.extend(s.pending.iter().copied());
            for k in &s.rx {
                stack.extend(k.fds.iter().copied());
            }
        }
        (0..self.socks.len())
            .filter(|&i| !self.socks[i].released && inflight[i] > 0 && !reached[i])
            .collect()
    }

    /// rule `collector_frees_cycle_queues_then_sockets`: the state once the collector has run, if anything is
    /// garbage. As `unix_gc` does, it first takes every skb that carries descriptors out of the garbage sockets'
    /// queues (and their embryos' queues), then frees those skbs: each descriptor's reference goes, and the
    /// sockets whose last reference that was are released as by close (a peer with data still queued at a freed
    /// socket sees ECONNRESET; an empty queue, EOF).
    pub(super) fn collected(&self) -> Option<Model> {
        let garbage = self.garbage();
        if garbage.is_empty() {
            return None;
        }
        let mut m = self.clone();
        m.alts.clear();
        m.split.clear();
        let mut fds = Vec::new();
        for g in garbage {
            let mut queues = vec![g];
            queues.extend(m.socks[g].pending.iter().copied());
            for q in queues {
                let rx = std::mem::take(&mut m.socks[q].rx);
                for skb in rx {
                    if skb.fds.is_empty() {
                        m.socks[q].rx.push_back(skb);
                    } else {
                        m.socks[skb.sender].wmem -= skb.truesize;
                        fds.extend(skb.fds);
                    }
                }
            }
        }
        m.drop_fds(fds);
        Some(m)
    }

    /// One call on every state the kernel may be in (see the module comment): the collector may run before the
    /// call in each state that holds garbage.
    pub(super) fn step_states(&mut self, call: &crate::script::Call) -> Prediction {
        let mut states = self.take_states();
        let n = states.len();
        for i in 0..n {
            if let Some(c) = states[i].collected() {
                if !states.contains(&c) {
                    states.push(c);
                }
            }
        }
        let mut stepped: Vec<(Model, Prediction)> = Vec::with_capacity(states.len());
        for mut s in states {
            let p = s.step_one(call);
            if !stepped.iter().any(|(m, q)| *m == s && *q == p) {
                stepped.push((s, p));
            }
        }
        let too_many = stepped.len() > MAX_STATES;
        let unmodelled = stepped
            .iter()
            .find(|(_, p)| !p.is_modelled())
            .map(|(_, p)| p.rule);
        let same = stepped
            .iter()
            .all(|(_, p)| p.allowed == stepped[0].1.allowed);
        let prediction = match (unmodelled, too_many) {
            (Some(rule), _) => Prediction::unmodelled(rule),
            // rule `in_flight_cycle_states_past_limit`: more states than `MAX_STATES`: the model stops.
            (None, true) => Prediction::unmodelled("in_flight_cycle_states_past_limit"),
            (None, false) if same => stepped[0].1.clone(),
            (None, false) => {
                // rule `in_flight_cycle_is_collected_asynchronously`: garbage in flight is freed by the
                // kernel's collector at a moment no script controls, so a call that can tell allows what each
                // state the kernel may be in allows (observed on the kernel by tests/gc.rs).
                let mut union =
                    Prediction::unmodelled("in_flight_cycle_is_collected_asynchronously");
                for (_, p) in &stepped {
                    for o in &p.allowed {
                        if !union.allowed.contains(o) {
                            union.allowed.push(o.clone());
                        }
                    }
                }
                union
            }
        };
        let split = if same || unmodelled.is_some() {
            Vec::new()
        } else {
            stepped
                .iter()
                .map(|(_, p)| {
                    prediction
                        .allowed
                        .iter()
                        .enumerate()
                        .filter(|(_, o)| p.allows(o))
                        .map(|(i, _)| i)
                        .collect()
                })
                .collect()
        };
        let mut it = stepped.into_iter().map(|(m, _)| m);
        *self = it.next().expect("at least the primary state");
        self.alts = it.collect();
        self.split = split;
        prediction
    }

    /// Every state, the primary first; this model keeps only the primary's copy until it is replaced.
    fn take_states(&mut self) -> Vec<Model> {
        let alts = std::mem::take(&mut self.alts);
        self.split.clear();
        let mut states = Vec::with_capacity(alts.len() * 2 + 2);
        states.push(self.clone());
        states.extend(alts);
        states
    }
}

impl Model {
    /// Tells the model which outcome of its last prediction the kernel returned (an index into `allowed`). Only
    /// a prediction that is a union over states the collector may have left (rule
    /// `in_flight_cycle_is_collected_asynchronously`) needs it: the states that did not allow the outcome go.
    /// Any other prediction, or an index it does not have, changes nothing.
    pub fn observe(&mut self, chosen: usize) {
        if self.split.is_empty() {
            return;
        }
        if !self.split.iter().any(|allows| allows.contains(&chosen)) {
            // The kernel returned what no state allows (a divergence): keep them all.
            return;
        }
        let split = std::mem::take(&mut self.split);
        let kept: Vec<Model> = self
            .take_states()
            .into_iter()
            .zip(&split)
            .filter(|(_, allows)| allows.contains(&chosen))
            .map(|(m, _)| m)
            .collect();
        let mut it = kept.into_iter();
        *self = it.next().expect("not empty");
        self.alts = it.collect();
    }

    /// How many descriptors are in flight (queued with SCM_RIGHTS, not yet received).
    pub fn fds_in_flight(&self) -> usize {
        self.socks
            .iter()
            .flat_map(|s| &s.rx)
            .map(|k| k.fds.len())
            .sum()
    }

    /// How many states the kernel may be in (1 unless garbage in flight is awaiting the collector).
    pub fn state_count(&self) -> usize {
        1 + self.alts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Params;
    use super::*;
    use crate::script::{parse, Call, Errno, Events, Outcome, Value};

    /// The model after the script's lines, each new descriptor named as written (`-> a, b`), and the
    /// prediction of the last line.
    fn run(text: &str) -> (Model, Prediction) {
        let script = parse(text).expect("test script parses");
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        let mut last = None;
        for l in &script.lines {
            let p = m.step(&l.call).expect("known names");
            let names: Vec<String> = match l.expect.as_ref().map(|e| &e.value) {
                Some(crate::script::ExpectValue::Named(n)) => n.clone(),
                _ => Vec::new(),
            };
            m.name_new(&names);
            last = Some(p);
        }
        (m, last.expect("a line"))
    }

    /// c's peer d is in flight inside the cycle a ⇄ b; every last descriptor is closed.
    const CYCLE: &str = "socketpair(STREAM) -> a, b
socketpair(STREAM) -> c, d
sendmsg(a, \"x\", rights=[a, d]) -> 1
sendmsg(b, \"y\", rights=[b]) -> 1
close(d) -> 0
close(a) -> 0
close(b) -> 0
";

    fn ready(e: Events) -> Outcome {
        Outcome::of(Value::Ready(e))
    }

    fn hup() -> Events {
        Events::IN | Events::OUT | Events::HUP | Events::RDHUP
    }

    #[test]
    fn a_peer_in_a_cycle_may_or_may_not_be_collected_yet() {
        let (m, p) = run(&format!("{CYCLE}poll(c)\n"));
        assert_eq!(p.rule, "in_flight_cycle_is_collected_asynchronously");
        assert_eq!(&p.allowed[..], &[ready(Events::OUT), ready(hup())]);
        assert_eq!(m.state_count(), 2);
    }

    #[test]
    fn seeing_the_collection_makes_predictions_exact_again() {
        let (mut m, p) = run(&format!("{CYCLE}poll(c)\n"));
        let i = p.allowed.iter().position(|o| *o == ready(hup())).unwrap();
        m.observe(i);
        assert_eq!(m.state_count(), 1);
        let p = m.step(&Call::Read("c".into(), 1)).unwrap();
        assert!(p.is_exact(), "{p:?}");
        assert!(
            matches!(&p.allowed[0].value, Value::Recv(r) if r.ret == 0 && r.data.is_empty()),
            "EOF: {p:?}"
        );
        assert_ne!(p.rule, "in_flight_cycle_is_collected_asynchronously");
    }

    #[test]
    fn seeing_no_collection_yet_leaves_it_possible_later() {
        let (mut m, p) = run(&format!("{CYCLE}poll(c)\n"));
        m.observe(
            p.allowed
                .iter()
                .position(|o| *o == ready(Events::OUT))
                .unwrap(),
        );
        assert_eq!(m.state_count(), 1, "only the uncollected state allowed OUT");
        let p = m.step(&Call::Poll("c".into())).unwrap();
        assert_eq!(&p.allowed[..], &[ready(Events::OUT), ready(hup())]);
    }

    #[test]
    fn a_collected_peer_with_unread_data_resets_its_peer() {
        let text = CYCLE.replace(
            "close(d) -> 0\n",
            "write(c, \"left\") -> 4\nclose(d) -> 0\n",
        );
        let (_, p) = run(&format!("{text}read(c, 1)\n"));
        assert_eq!(
            &p.allowed[..],
            &[Outcome::err(Errno::EAGAIN), Outcome::err(Errno::ECONNRESET)]
        );
    }

    #[test]
    fn copies_in_flight_at_a_named_socket_are_not_garbage() {
        // d is in flight at b, which still has a name: closing d's own name leaves it to b's reader.
        let (m, p) = run("socketpair(STREAM) -> a, b
socketpair(STREAM) -> c, d
sendmsg(a, \"x\", rights=[d]) -> 1
close(d) -> 0
poll(c)
");
        assert!(p.is_exact());
        assert_eq!(p.allowed[0], ready(Events::OUT));
        assert_eq!(m.state_count(), 1);
        assert!(m.garbage().is_empty());
    }

    #[test]
    fn a_socket_sent_over_itself_is_garbage_once_its_names_close() {
        let (m, _) = run("socketpair(STREAM) -> a, b
sendmsg(a, \"x\", rights=[b]) -> 1
close(a) -> 0
");
        assert!(m.garbage().is_empty(), "b still has its name");
        let (m, _) = run("socketpair(STREAM) -> a, b
sendmsg(a, \"x\", rights=[b]) -> 1
close(a) -> 0
close(b) -> 0
");
        assert_eq!(m.garbage().len(), 1, "b is only in its own queue");
        let c = m.collected().expect("garbage to collect");
        assert!(c.garbage().is_empty() && (0..c.sock_count()).all(|i| c.sock(i).released));
    }

    #[test]
    fn an_outcome_no_state_allows_keeps_every_state() {
        let (mut m, _) = run(&format!("{CYCLE}poll(c)\n"));
        m.observe(7);
        assert_eq!(m.state_count(), 2);
    }
}
