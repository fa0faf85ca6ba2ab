//! Playing one step of a `layer_envelopes` script, and the envelopes the simulated peers send.

use super::*;
use crate::script::{CapsChoice, Corr, EnvSpec};

/// Builds the envelope frame of `spec` (answers and CANCELs refer to ids the model knows).
fn build(s: &Shadow, spec: &EnvSpec) -> Bytes {
    let pick = |c: &Corr| -> u64 {
        match *c {
            Corr::Ours(i) if !s.sent_requests.is_empty() => {
                s.sent_requests[usize::from(i) % s.sent_requests.len()].1
            }
            Corr::Theirs(i) if !s.theirs.is_empty() => s.theirs[usize::from(i) % s.theirs.len()].1,
            Corr::Any(x) => x,
            _ => 0,
        }
    };
    let mut env;
    match spec {
        EnvSpec::Request {
            id,
            event: e,
            ttl_ms,
            len,
        } => {
            env = Envelope::new(LayerId::REQREP, wire::REQUEST, u64::from(*id));
            env.subject = Some(event(*e).to_owned());
            env.ttl_ms = ttl_ms.map(u32::from);
            env.payload = Bytes::from(vec![b'q'; usize::from(*len)]);
        }
        EnvSpec::Tick { event: e, len } => {
            env = Envelope::new(LayerId::REQREP, wire::TICK, 7);
            env.subject = Some(event(*e).to_owned());
            env.payload = Bytes::from(vec![b't'; usize::from(*len)]);
        }
        EnvSpec::Reply { corr, payload } => {
            env = Envelope::new(LayerId::REQREP, wire::REPLY, 9);
            env.corr = Some(pick(corr));
            env.payload = Bytes::from(payload.clone());
        }
        EnvSpec::Error {
            corr,
            class,
            code,
            message,
        } => {
            env = Envelope::new(LayerId::REQREP, wire::ERROR, 9);
            env.corr = Some(pick(corr));
            let class = match class % 5 {
                0 => ErrorClass::Handler,
                1 => ErrorClass::NoHandler,
                2 => ErrorClass::Overloaded,
                3 => ErrorClass::PayloadTooLarge,
                _ => {
                    env.payload = Bytes::from(message.clone().into_bytes());
                    return env.encode().expect("short subject");
                }
            };
            let body = ErrorBody {
                class,
                code: *code,
                message: message.clone(),
            };
            env.payload = body.encode();
        }
        EnvSpec::Cancel(corr) => {
            env = Envelope::new(LayerId::REQREP, wire::CANCEL, 11);
            env.corr = Some(pick(corr));
        }
        EnvSpec::Other { layer, kind, corr } => {
            env = Envelope::new(LayerId(*layer), *kind, 13);
            env.corr = *corr;
        }
    }
    env.encode().expect("short subject")
}

/// Records what a frame a peer sends us tells the model, from the frame itself (so a damaged or
/// raw frame that still decodes counts like a built one): REQUEST ids, CANCELs, and the outcome
/// each REPLY/ERROR would give the request it names.
pub(super) fn record(s: &mut Shadow, from: Uuid, frame: &Bytes) {
    let Ok(env) = Envelope::decode(frame) else {
        return;
    };
    if env.layer != LayerId::REQREP {
        return;
    }
    let Some(corr) = env.corr else {
        if env.kind == wire::REQUEST {
            s.theirs.push((from, env.id));
        }
        return;
    };
    let result = match env.kind {
        wire::REQUEST => {
            s.theirs.push((from, env.id));
            return;
        }
        wire::CANCEL => {
            s.cancels.insert((from, corr));
            return;
        }
        wire::REPLY => Ok(env.payload),
        wire::ERROR => match ErrorBody::decode(&env.payload) {
            Ok(b) => Err(match b.class {
                ErrorClass::Handler => RequestError::Handler {
                    code: b.code,
                    message: b.message,
                },
                ErrorClass::NoHandler => RequestError::NoResponders(NoResponders::NoHandler),
                ErrorClass::Overloaded => RequestError::Overloaded("responder's handlers"),
                ErrorClass::PayloadTooLarge => RequestError::PayloadTooLarge,
                _ => return,
            }),
            Err(_) => return,
        },
        _ => return,
    };
    s.injected.entry((from, corr)).or_default().push(result);
}

pub(super) fn play(run: &mut Player, st: LayerStep) {
    let now = run.now;
    match st {
        LayerStep::Hello(p, caps) => {
            let from = peer(p);
            let mut headers = vec![(ZMESH_HEADER.to_owned(), "1".to_owned())];
            match caps {
                CapsChoice::Req => headers.push((CAPS_HEADER.into(), "req".into())),
                CapsChoice::Other => headers.push((CAPS_HEADER.into(), "ev,future".into())),
                CapsChoice::Empty => headers.push((CAPS_HEADER.into(), String::new())),
                CapsChoice::Plain => {}
            }
            let hello = ZreMessage::Hello {
                endpoint: format!("tcp://127.0.0.1:{}", 7000 + u16::from(p % 8)),
                groups: vec![],
                status: 0,
                name: format!("p{p}"),
                headers,
            };
            run.message(from, &hello);
        }
        LayerStep::Envelope(p, spec) => {
            let from = peer(p);
            let frame = build(&run.shell.0.borrow(), &spec);
            run.whisper(from, frame);
        }
        LayerStep::Damaged {
            peer: p,
            env,
            cut,
            flip,
        } => {
            let mut f = build(&run.shell.0.borrow(), &env).to_vec();
            f.truncate(usize::from(cut).max(3));
            let i = usize::from(flip.0) % f.len();
            f[i] ^= flip.1;
            run.whisper(peer(p), Bytes::from(f));
        }
        LayerStep::Raw(p, magic, bytes) => {
            let mut f = if magic {
                envelope::MAGIC.to_vec()
            } else {
                Vec::new()
            };
            f.extend_from_slice(&bytes);
            run.whisper(peer(p), Bytes::from(f));
        }
        LayerStep::Goodbye(p) => run.message(peer(p), &ZreMessage::Goodbye),
        LayerStep::Departure(p) => run.driver.engine().handle_departure(now, peer(p)),
        LayerStep::SendFailed(p) => run.driver.engine().handle_send_failed(now, peer(p)),
        LayerStep::Refuse => run.shell.0.borrow_mut().refuse_next = true,
        LayerStep::Request {
            peer: p,
            event: e,
            len,
            timeout_ms,
        } => run.request(peer(p), event(e), len, timeout_ms),
        LayerStep::Tick(p, e, via_handle) => {
            let (to, ev) = (peer(p), event(e));
            let payload = Bytes::from_static(b"t");
            if via_handle {
                let c = Command::Tick {
                    peer: to,
                    event: ev.to_owned(),
                    payload,
                };
                run.driver
                    .reqrep(|rr, io| rr.handle(Input::Command(c), now, io));
            } else {
                let r = run.driver.reqrep(|rr, io| rr.tick(to, ev, payload, io));
                let s = run.shell.0.borrow();
                let capable = s
                    .entered
                    .get(&to)
                    .is_some_and(|c| c.is_some_and(|c| c.has(LayerId::REQREP)));
                assert_eq!(r.is_ok(), capable && pattern::validate_name(ev).is_ok());
            }
        }
        LayerStep::Cancel(i, via_handle) => {
            let (id, waiter) = {
                let mut s = run.shell.0.borrow_mut();
                let ids: Vec<(u64, u64)> = s.ids.iter().map(|(&i, &w)| (i, w)).collect();
                if ids.is_empty() {
                    (u64::from(i), None)
                } else {
                    let (id, w) = ids[usize::from(i) % ids.len()];
                    s.mine.get_mut(&w).unwrap().cancelled = true;
                    (id, Some(w))
                }
            };
            if via_handle {
                run.driver
                    .reqrep(|rr, io| rr.handle(Input::Command(Command::Cancel(id)), now, io));
            } else {
                run.driver.reqrep(|rr, io| rr.cancel(id, io));
            }
            run.flush();
            if let Some(w) = waiter {
                assert!(
                    !run.shell.0.borrow().mine.contains_key(&w),
                    "cancel did not end {id}"
                );
            }
        }
        LayerStep::Register {
            id,
            pattern: p,
            tick,
            via_handle,
        } => {
            let id = u64::from(id % 4);
            let pattern = Pattern::parse(PATTERNS[usize::from(p) % PATTERNS.len()]).unwrap();
            let kind = if tick {
                HandlerKind::Tick
            } else {
                HandlerKind::Request
            };
            {
                let mut s = run.shell.0.borrow_mut();
                s.handlers.retain(|(h, _, _)| *h != id);
                s.handlers.push((id, pattern.clone(), kind));
            }
            if via_handle {
                let c = Command::Register { id, pattern, kind };
                run.driver
                    .reqrep(|rr, io| rr.handle(Input::Command(c), now, io));
            } else {
                run.driver.reqrep(|rr, _| rr.register(id, pattern, kind));
            }
        }
        LayerStep::Unregister(id) => {
            let id = u64::from(id % 4);
            run.shell
                .0
                .borrow_mut()
                .handlers
                .retain(|(h, _, _)| *h != id);
            run.driver.reqrep(|rr, _| rr.unregister(id));
        }
        LayerStep::Reply {
            which,
            error,
            len,
            via_handle,
        } => {
            let (key, running) = pick_running(run, which);
            let result = if error {
                Err((u16::from(len), "nope".to_owned()))
            } else {
                Ok(Bytes::from(vec![b'r'; usize::from(len)]))
            };
            let before = run.driver.reqrep_ref().stats().replies_after_end;
            if via_handle {
                let c = Command::Reply { key, result };
                run.driver
                    .reqrep(|rr, io| rr.handle(Input::Command(c), now, io));
            } else {
                run.driver.reqrep(|rr, io| rr.reply(key, result, io));
            }
            let after = run.driver.reqrep_ref().stats().replies_after_end;
            assert_eq!(
                after != before,
                !running,
                "answer to {key:?} (running {running})"
            );
            run.flush();
            let s = run.shell.0.borrow();
            let sent = s.answers_sent.contains(&(key.peer, key.id));
            assert!(
                sent == running || (running && s.refused),
                "answer to {key:?}: running {running}, sent {sent}"
            );
        }
        LayerStep::Abandon(which) => {
            let (key, _) = pick_running(run, which);
            if which % 2 == 0 {
                run.driver.reqrep(|rr, _| rr.abandon(key));
            } else {
                run.driver
                    .reqrep(|rr, io| rr.handle(Input::Command(Command::Abandon(key)), now, io));
            }
        }
        LayerStep::Advance(ms) => {
            run.now += Duration::from_millis(u64::from(ms));
            run.shell.0.borrow_mut().now = Some(run.now);
            run.flush();
            run.timers();
        }
        LayerStep::Deadline => {
            if let Some(t) = run.driver.poll_timeout() {
                run.now = run.now.max(t);
            }
            run.shell.0.borrow_mut().now = Some(run.now);
            run.flush();
            run.timers();
        }
        LayerStep::Stop => {
            run.shell.0.borrow_mut().stopping = true;
            let (mut t, mut sink) = (run.shell.clone(), run.shell.clone());
            run.driver.stop(now, &mut t, &mut sink);
            let mut s = run.shell.0.borrow_mut();
            assert!(s.connected.is_empty() && s.running.is_empty() && s.mine.is_empty());
            // The engine forgets its peers without EXIT events.
            s.entered.clear();
        }
    }
}

/// The n-th running request (removed from the model: it is answered or abandoned now), or a key
/// that is not running.
fn pick_running(run: &mut Player, which: u8) -> (InboundKey, bool) {
    let mut s = run.shell.0.borrow_mut();
    let keys: Vec<InboundKey> = s.running.keys().copied().collect();
    if keys.is_empty() || which >= 200 {
        let key = InboundKey {
            peer: peer(which),
            id: u64::from(which),
        };
        return (key, s.running.remove(&key).is_some());
    }
    let key = keys[usize::from(which) % keys.len()];
    s.running.remove(&key);
    (key, true)
}
