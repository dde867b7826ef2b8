//! SMP: CPUs come up, IPIs arrive, waiting calls wait, and the property the
//! whole project rests on: a CPU with interrupts disabled holds back the
//! completion of a waiting cross-CPU call until it enables them again. Its
//! counterpart for `tlb=nmi`: a call delivered by NMI completes *inside* such
//! a section. Concurrent callers by both deliveries lose and duplicate nothing.
//!
//! Tests that need a second CPU report themselves `ignored` on one CPU.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use kernel::smp::call::Delivery;
use kernel::smp::{self, CpuSet, call, nmi, work};
use kernel::time::{Deadline, now_ns};

use crate::util::{other_cpu, wait_for};

/// Runs `f` on `cpu` with interrupts disabled, after setting `inside`.
fn hold_interrupts_off(cpu: usize, inside: Arc<AtomicBool>, f: impl FnOnce() + Send + 'static) -> work::WorkHandle {
    work::run_on(cpu, move || {
        x86_64::instructions::interrupts::disable();
        inside.store(true, Ordering::Release);
        f();
        x86_64::instructions::interrupts::enable();
    })
    .expect("cannot place work on the other CPU")
}

/// Holds `cpu` in an interrupts-off section until `release` is set (bounded:
/// 3 s). `inside` is set right after `cli` and cleared right before `sti`.
fn hold_until_released(cpu: usize, inside: Arc<AtomicBool>, release: Arc<AtomicBool>) -> work::WorkHandle {
    let flag = inside.clone();
    hold_interrupts_off(cpu, inside, move || {
        let until = Deadline::after_ns(3_000_000_000);
        while !release.load(Ordering::Acquire) && !until.expired() {
            core::hint::spin_loop();
        }
        flag.store(false, Ordering::Release);
    })
}

kernel::ktests! {
    fn every_listed_cpu_comes_online() {
        let listed = kernel::acpi::platform().cpus.iter().filter(|c| c.enabled).count();
        assert_eq!(smp::online_count(), listed, "online {} of {listed} listed CPUs", smp::online_cpus());
        for cpu in smp::online_cpus().iter() {
            let block = smp::percpu::cpu(cpu).expect("online CPU without per-CPU data");
            assert!(block.online.load(Ordering::Acquire));
            assert_eq!(block.index as usize, cpu);
        }
        log::info!("online: {} ({:?} APIC)", smp::online_cpus(), kernel::arch::apic::mode());
    }

    fn per_cpu_data_is_per_cpu() {
        let me = smp::current();
        assert_eq!(me.index as usize, smp::cpu_index());
        assert_eq!(me.apic_id, kernel::arch::apic::id());
        let ids = Arc::new(AtomicU64::new(0));
        for cpu in smp::online_cpus().iter() {
            let ids = ids.clone();
            call::call_and_wait(CpuSet::single(cpu), move || {
                let c = smp::current();
                assert_eq!(c.apic_id, kernel::arch::apic::id(), "GS points at another CPU's block");
                ids.fetch_or(1 << c.index, Ordering::Relaxed);
            })
            .unwrap();
        }
        assert_eq!(ids.load(Ordering::Relaxed).count_ones() as usize, smp::online_count());
    }

    fn ipis_reach_each_cpu() {
        let seen = Arc::new(AtomicU64::new(0));
        for cpu in smp::online_cpus().iter() {
            let before = smp::percpu::cpu(cpu).unwrap().calls_run.load(Ordering::Relaxed);
            let s = seen.clone();
            call::call_and_wait(CpuSet::single(cpu), move || {
                s.fetch_or(1 << smp::cpu_index(), Ordering::Relaxed);
            })
            .unwrap_or_else(|e| panic!("{e}"));
            let after = smp::percpu::cpu(cpu).unwrap().calls_run.load(Ordering::Relaxed);
            assert_eq!(after, before + 1, "cpu{cpu} did not count the call");
        }
        let want = smp::online_cpus().iter().fold(0u64, |m, c| m | 1 << c);
        assert_eq!(seen.load(Ordering::Relaxed), want);
    }

    fn a_waiting_call_returns_only_after_every_target_ran() {
        for _ in 0..20 {
            let done = Arc::new(AtomicU64::new(0));
            let d = done.clone();
            call::call_and_wait(smp::online_cpus(), move || {
                // Make the function slow, so an early return would show.
                let until = Deadline::after_ns(200_000);
                while !until.expired() {
                    core::hint::spin_loop();
                }
                d.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(done.load(Ordering::Relaxed) as usize, smp::online_count());
        }
    }

    fn an_interrupts_off_cpu_holds_back_a_waiting_call() {
        let Some(other) = other_cpu() else { return };
        const HOLD_NS: u64 = 50_000_000;
        let inside = Arc::new(AtomicBool::new(false));
        let enabled_at = Arc::new(AtomicU64::new(0));
        let e = enabled_at.clone();
        let section = hold_interrupts_off(other, inside.clone(), move || {
            let until = Deadline::after_ns(HOLD_NS);
            while !until.expired() {
                core::hint::spin_loop();
            }
            // The last moment before `sti`: the call cannot have run before it.
            e.store(now_ns(), Ordering::Release);
        });
        wait_for(&inside);
        let sent = now_ns();
        let ran_at = Arc::new(AtomicU64::new(0));
        let r = ran_at.clone();
        call::call_and_wait(CpuSet::single(other), move || r.store(now_ns(), Ordering::Release))
            .unwrap_or_else(|e| panic!("{e}"));
        let returned = now_ns();
        section.join(5_000_000_000).expect("section did not end");
        let (enabled, ran) = (enabled_at.load(Ordering::Acquire), ran_at.load(Ordering::Acquire));
        log::info!(
            "call sent at +0 us, interrupts enabled at +{} us, function ran at +{} us, wait returned at +{} us",
            enabled.saturating_sub(sent) / 1000,
            ran.saturating_sub(sent) / 1000,
            (returned - sent) / 1000
        );
        assert!(ran >= enabled, "the call ran {} ns before interrupts were enabled", enabled - ran);
        assert!(returned >= enabled, "the wait returned before interrupts were enabled");
    }

    fn the_hold_back_also_holds_for_a_broadcast() {
        let Some(_) = other_cpu() else { return };
        let me = smp::cpu_index();
        let others: alloc::vec::Vec<usize> = smp::online_cpus().iter().filter(|&c| c != me).collect();
        let last_enable = Arc::new(AtomicU64::new(0));
        let mut sections = alloc::vec::Vec::new();
        let mut insides = alloc::vec::Vec::new();
        for (i, &cpu) in others.iter().enumerate() {
            let inside = Arc::new(AtomicBool::new(false));
            let l = last_enable.clone();
            let hold = 10_000_000 * (i as u64 + 1);
            sections.push(hold_interrupts_off(cpu, inside.clone(), move || {
                let until = Deadline::after_ns(hold);
                while !until.expired() {
                    core::hint::spin_loop();
                }
                l.fetch_max(now_ns(), Ordering::AcqRel);
            }));
            insides.push(inside);
        }
        for inside in &insides {
            wait_for(inside);
        }
        call::call_and_wait(smp::online_cpus(), || {}).unwrap_or_else(|e| panic!("{e}"));
        let returned = now_ns();
        for s in &sections {
            s.join(5_000_000_000).expect("section did not end");
        }
        assert!(returned >= last_enable.load(Ordering::Acquire), "a broadcast wait ended before the last CPU enabled interrupts");
    }

    fn an_nmi_is_taken_with_interrupts_off() {
        let Some(other) = other_cpu() else { return };
        let inside = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let still_inside = Arc::new(AtomicBool::new(false));
        let (rel, still) = (release.clone(), still_inside.clone());
        let section = hold_interrupts_off(other, inside.clone(), move || {
            let until = Deadline::after_ns(3_000_000_000);
            still.store(true, Ordering::Release);
            while !rel.load(Ordering::Acquire) && !until.expired() {
                core::hint::spin_loop();
            }
        });
        wait_for(&inside);
        let nmis_before = smp::percpu::cpu(other).unwrap().nmis.load(Ordering::Relaxed);
        let answered = nmi::dump_cpus(CpuSet::single(other));
        let in_section = still_inside.load(Ordering::Acquire) && !section.is_done();
        release.store(true, Ordering::Release);
        section.join(5_000_000_000).expect("section did not end");
        assert!(answered.contains(other), "cpu{other} did not answer the NMI");
        assert!(in_section, "the CPU had left its interrupts-off section before answering");
        assert!(smp::percpu::cpu(other).unwrap().nmis.load(Ordering::Relaxed) > nmis_before);
    }

    fn a_timeout_names_the_silent_cpu() {
        let Some(other) = other_cpu() else { return };
        let inside = Arc::new(AtomicBool::new(false));
        let section = hold_interrupts_off(other, inside.clone(), || {
            let until = Deadline::after_ns(300_000_000);
            while !until.expired() {
                core::hint::spin_loop();
            }
        });
        wait_for(&inside);
        let late = Arc::new(AtomicBool::new(false));
        let l = late.clone();
        let pending = call::call(CpuSet::single(other), move || l.store(true, Ordering::Release));
        let err = pending.wait(50_000_000).expect_err("the call completed while its target had interrupts off");
        assert_eq!(err.missing, CpuSet::single(other));
        let text = alloc::format!("{err}");
        assert!(text.contains(&alloc::format!("cpu{other}")), "{text}");
        section.join(5_000_000_000).expect("section did not end");
        // The request stays valid after the caller gave up: it runs late.
        wait_for(&late);
    }

    fn a_call_to_self_runs_at_once() {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let p = call::call(CpuSet::single(smp::cpu_index()), move || {
            assert!(!kernel::arch::cpu::interrupts_enabled(), "a call runs with interrupts off");
            r.store(true, Ordering::Release);
        });
        assert!(ran.load(Ordering::Acquire));
        assert!(p.pending().is_empty());
        p.wait(1).unwrap();
    }

    fn offline_targets_are_ignored() {
        let mut targets = smp::online_cpus();
        targets.insert(smp::MAX_CPUS - 1);
        call::call_and_wait(targets, || {}).unwrap_or_else(|e| panic!("{e}"));
        assert!(work::run_on(smp::MAX_CPUS - 1, || {}).is_err());
    }

    /// The contrast to `an_interrupts_off_cpu_holds_back_a_waiting_call`: the
    /// same call delivered by NMI completes while the target still sits in its
    /// interrupts-off section, and runs inside it.
    fn an_nmi_call_completes_inside_an_interrupts_off_section() {
        let Some(other) = other_cpu() else { return };
        let inside = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let section = hold_until_released(other, inside.clone(), release.clone());
        wait_for(&inside);
        // Bits: 1 ran, 2 the section's flag was set, 4 interrupts were off,
        // 8 on the target CPU.
        let seen = Arc::new(AtomicU64::new(0));
        let (s, flag) = (seen.clone(), inside.clone());
        let result = call::call_with(CpuSet::single(other), Delivery::Nmi, move || {
            let mut v = 1;
            if flag.load(Ordering::Acquire) {
                v |= 2;
            }
            if !kernel::arch::cpu::interrupts_enabled() {
                v |= 4;
            }
            if smp::cpu_index() == other {
                v |= 8;
            }
            s.store(v, Ordering::Release);
        })
        .wait(call::call_timeout_ns());
        let section_running = !section.is_done();
        release.store(true, Ordering::Release);
        section.join(5_000_000_000).expect("section did not end");
        result.unwrap_or_else(|e| panic!("an NMI call did not complete inside the section: {e}"));
        let v = seen.load(Ordering::Acquire);
        assert_eq!(v & 1, 1, "the function did not run");
        assert_eq!(v & 8, 8, "the function ran on the wrong CPU");
        assert_eq!(v & 4, 4, "the function ran with interrupts on");
        assert_eq!(v & 2, 2, "the function ran outside the interrupts-off section");
        assert!(section_running, "the wait returned only after the section ended");
    }

    /// IPI and NMI requests use separate lists: an NMI must never run an
    /// IPI-delivered function (that would run it inside the section).
    fn an_nmi_call_overtakes_a_held_back_ipi_call() {
        let Some(other) = other_cpu() else { return };
        let inside = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let section = hold_until_released(other, inside.clone(), release.clone());
        wait_for(&inside);
        let ipi_ran = Arc::new(AtomicBool::new(false));
        let r = ipi_ran.clone();
        let held = call::call(CpuSet::single(other), move || r.store(true, Ordering::Release));
        let nmi_result = call::call_with(CpuSet::single(other), Delivery::Nmi, || {}).wait(call::call_timeout_ns());
        let ipi_early = ipi_ran.load(Ordering::Acquire) || !held.pending().contains(other);
        release.store(true, Ordering::Release);
        let ipi_result = held.wait(call::call_timeout_ns());
        section.join(5_000_000_000).expect("section did not end");
        nmi_result.unwrap_or_else(|e| panic!("NMI call: {e}"));
        ipi_result.unwrap_or_else(|e| panic!("IPI call after the section: {e}"));
        assert!(!ipi_early, "the IPI-delivered function ran inside the interrupts-off section");
        assert!(ipi_ran.load(Ordering::Acquire));
    }

    /// Every other CPU calls this one in bursts, alternating IPI and NMI
    /// delivery; each request must run exactly once.
    fn concurrent_callers_by_ipi_and_nmi_lose_and_duplicate_nothing() {
        let Some(_) = other_cpu() else { return };
        const PER_CALLER: usize = 1000;
        const BURST: usize = 8;
        let target = smp::cpu_index();
        let callers: Vec<usize> = smp::online_cpus().iter().filter(|&c| c != target).collect();
        let runs: Arc<Vec<AtomicU8>> = Arc::new((0..callers.len() * PER_CALLER).map(|_| AtomicU8::new(0)).collect());
        let timeouts = Arc::new(AtomicU64::new(0));
        let go = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for (ci, &cpu) in callers.iter().enumerate() {
            let (runs, timeouts, go) = (runs.clone(), timeouts.clone(), go.clone());
            let h = work::run_on(cpu, move || {
                wait_for(&go);
                for start in (0..PER_CALLER).step_by(BURST) {
                    let burst: Vec<call::PendingCall> = (start..(start + BURST).min(PER_CALLER))
                        .map(|i| {
                            let id = ci * PER_CALLER + i;
                            let delivery = if (i + ci) % 2 == 0 { Delivery::Ipi } else { Delivery::Nmi };
                            let runs = runs.clone();
                            call::call_with(CpuSet::single(target), delivery, move || {
                                runs[id].fetch_add(1, Ordering::Relaxed);
                            })
                        })
                        .collect();
                    for p in burst {
                        if p.wait(call::call_timeout_ns()).is_err() {
                            timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
            .expect("cannot place work on a caller CPU");
            handles.push(h);
        }
        go.store(true, Ordering::Release);
        for h in &handles {
            h.join(120_000_000_000).unwrap_or_else(|cpu| panic!("caller cpu{cpu} did not finish"));
        }
        let (mut lost, mut duplicated) = (0, 0);
        for r in runs.iter() {
            match r.load(Ordering::Relaxed) {
                0 => lost += 1,
                1 => {}
                _ => duplicated += 1,
            }
        }
        log::info!("{} callers x {PER_CALLER} calls to cpu{target}: lost {lost}, duplicated {duplicated}", callers.len());
        assert_eq!(timeouts.load(Ordering::Relaxed), 0, "some calls timed out");
        assert_eq!((lost, duplicated), (0, 0), "requests lost or run twice");
    }

    /// Every subset of the other CPUs (at most 63 of them), by IPI and by
    /// NMI: each target runs the call once, and no other CPU runs it; with
    /// logical destinations (`smp.ipi_logical`, default on) a subset of two
    /// or more CPUs costs one ICR write per APIC cluster among them, not one
    /// per CPU. Each CPU's logical id reads back from its LDR as recorded.
    fn a_call_to_any_subset_reaches_exactly_its_cpus() {
        use kernel::smp::ipi;
        let Some(_) = other_cpu() else { return };
        let me = smp::cpu_index();
        let others: Vec<usize> = smp::online_cpus().iter().filter(|&c| c != me).collect();
        let model = ipi::model();
        let pack = |id: Option<kernel::arch::apic::LogicalId>| id.map_or(0, |i| u64::from(i.cluster) << 32 | u64::from(i.mask));
        log::info!("logical model {model:?}, logical sends {}", ipi::logical_on());
        for cpu in smp::online_cpus().iter() {
            let read = Arc::new(AtomicU64::new(u64::MAX));
            let r = read.clone();
            call::call_and_wait(CpuSet::single(cpu), move || {
                r.store(pack(kernel::arch::apic::logical_id()), Ordering::Relaxed);
            })
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(read.load(Ordering::Relaxed), pack(ipi::logical_of(cpu)), "cpu{cpu}'s LDR");
            if cpu < 8 && model == Some(kernel::arch::apic::LogicalModel::XApicFlat) {
                assert_eq!(ipi::logical_of(cpu).map(|i| i.mask), Some(1 << cpu), "cpu{cpu}'s flat logical id");
            }
        }
        let subsets = (1u64 << others.len().min(6)) - 1;
        for bits in 1..=subsets {
            let mut targets = CpuSet::default();
            for (i, &c) in others.iter().enumerate() {
                if bits & 1 << i != 0 {
                    targets.insert(c);
                }
            }
            let n = targets.iter().count();
            for delivery in [Delivery::Ipi, Delivery::Nmi] {
                let ran = Arc::new(AtomicU64::new(0));
                let count = Arc::new(AtomicU64::new(0));
                let (r, c) = (ran.clone(), count.clone());
                let writes = ipi::icr_writes(me);
                call::call_with(targets, delivery, move || {
                    r.fetch_or(1 << smp::cpu_index(), Ordering::Relaxed);
                    c.fetch_add(1, Ordering::Relaxed);
                })
                .wait(call::call_timeout_ns())
                .unwrap_or_else(|e| panic!("{e} (targets {targets}, {delivery:?})"));
                let writes = ipi::icr_writes(me) - writes;
                let want = targets.iter().fold(0u64, |m, c| m | 1 << c);
                assert_eq!(ran.load(Ordering::Relaxed), want, "targets {targets} by {delivery:?}");
                assert_eq!(count.load(Ordering::Relaxed), n as u64, "targets {targets} by {delivery:?}");
                let most = if n == others.len() && n >= 2 && delivery == Delivery::Ipi {
                    1 // the all-but-self shorthand
                } else if n >= 2 && model.is_some() && ipi::logical_on() {
                    let mut clusters: Vec<u64> =
                        targets.iter().map(|t| ipi::logical_of(t).map_or(u64::MAX - t as u64, |i| u64::from(i.cluster))).collect();
                    clusters.sort_unstable();
                    clusters.dedup();
                    clusters.len() as u64
                } else {
                    n as u64
                };
                // A kick is skipped when the target's list was not empty (a
                // kick is already on its way), so fewer writes are possible.
                assert!((1..=most).contains(&writes), "targets {targets} by {delivery:?}: {writes} ICR writes, expected 1..={most}");
            }
        }
    }
}
