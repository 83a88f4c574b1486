//! [`Simulator`]: the worlds, the mutation engine, the faults and the counters behind one
//! cheaply clonable handle, shared by the HTTP server, the ticker and in-process callers.
//!
//! Locks are `std::sync` locks held only for the length of a page scan or one mutation,
//! never across an `.await`. Serving takes a world's read lock; a mutation takes the
//! engine lock, then one world's write lock.

use crate::clock::Clock;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::clock::SimClock;
use super::cursor::Cursor;
use super::faults::{Decision, FaultConfig, FaultState, ScriptedFault};
use super::mutate::{self, Applied, Engine, Mutation, SimError, TruthEntry};
use super::query::ListParams;
use super::query::Matcher;
use super::stats::SimStats;
use super::world::{Ms, World};
use crate::ats::model::Application;

/// The default API key: readable, obviously not a real one.
pub const DEFAULT_API_KEY: &str = "sim_test_key";

/// How to build a simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Number of integrations, each its own world (tools cycle through Greenhouse, Lever,
    /// Workday, ...).
    pub integrations: usize,
    /// Applications generated per integration.
    pub applications: usize,
    /// Determines the worlds, the random mutations and the random faults.
    pub seed: u64,
    /// Random mutations per second applied by the ticker while serving (0 = none).
    pub changes_per_second: f64,
    /// The bearer token requests must carry.
    pub api_key: String,
    /// Initial fault settings.
    pub faults: FaultConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            integrations: 3,
            applications: 1_000,
            seed: 1,
            changes_per_second: 0.0,
            api_key: DEFAULT_API_KEY.to_owned(),
            faults: FaultConfig::default(),
        }
    }
}

/// A Kombo-compatible simulator. Clones share the same state.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    /// Bearer token expected on API requests.
    api_key: String,
    /// Ticker rate while serving.
    changes_per_second: f64,
    /// Integration ids, in world order.
    ids: Vec<String>,
    /// One world per integration; a page scan holds one read lock.
    worlds: Vec<RwLock<World>>,
    /// Random stream, clock and truth log; held for one batch of mutations.
    engine: Mutex<Engine>,
    /// Fault settings and their random stream.
    faults: Mutex<FaultState>,
    /// Request counters.
    stats: Mutex<SimStats>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("integrations", &self.inner.ids)
            .finish_non_exhaustive()
    }
}

/// A page of results, before serialization.
pub(crate) struct PageOut {
    pub results: Vec<Application>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panic while holding the lock cannot leave a world half-changed in a way that
    // matters more than stopping the simulator would; keep serving.
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Simulator {
    /// Generates the worlds (in parallel, one thread per integration, at most one per core).
    pub fn new(config: SimConfig) -> Self {
        Self::with_clock(config, Clock::System)
    }

    /// As [`Simulator::new`], with changes timestamped by `clock` (tests run the
    /// simulator on tokio's paused clock).
    pub fn with_clock(config: SimConfig, clock: Clock) -> Self {
        let threads = std::thread::available_parallelism().map_or(4, usize::from);
        let indices: Vec<usize> = (0..config.integrations).collect();
        let mut worlds: Vec<World> = Vec::with_capacity(config.integrations);
        for chunk in indices.chunks(threads.max(1)) {
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|&i| {
                        scope.spawn(move || World::generate(config.seed, i, config.applications))
                    })
                    .collect();
                // Generation does not panic; should a thread do so anyway, the panic
                // continues on the caller's thread.
                worlds.extend(
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
                );
            });
        }
        let newest = worlds
            .iter()
            .flat_map(|w| w.apps.iter().map(|a| a.updated_at()))
            .max()
            .unwrap_or(0);
        let ids = worlds.iter().map(|w| w.id.clone()).collect();
        Simulator {
            inner: Arc::new(Inner {
                api_key: config.api_key,
                changes_per_second: config.changes_per_second.max(0.0),
                ids,
                worlds: worlds.into_iter().map(RwLock::new).collect(),
                engine: Mutex::new(Engine::new(
                    config.seed,
                    SimClock::starting_after(newest, clock),
                )),
                faults: Mutex::new(FaultState::new(config.faults, config.seed)),
                stats: Mutex::new(SimStats::default()),
            }),
        }
    }

    /// The integration ids, e.g. `greenhouse:…`, in a fixed order.
    pub fn integration_ids(&self) -> Vec<String> {
        self.inner.ids.clone()
    }

    /// The bearer token API requests must carry.
    pub fn api_key(&self) -> &str {
        &self.inner.api_key
    }

    /// Random mutations per second the ticker applies while serving.
    pub fn changes_per_second(&self) -> f64 {
        self.inner.changes_per_second
    }

    fn world_index(&self, integration_id: &str) -> Option<usize> {
        self.inner.ids.iter().position(|i| i == integration_id)
    }

    /// Applies `n` random mutations (chosen by the seeded RNG) and returns their entries.
    pub fn mutate(&self, n: usize) -> Vec<TruthEntry> {
        let mut out = Vec::with_capacity(n);
        if self.inner.worlds.is_empty() {
            return out;
        }
        let mut engine = lock(&self.inner.engine);
        // The batch is one step for readers: every world is locked for all of it, so a page
        // served meanwhile shows each world before the batch or after it, never between
        // two changes of one application (tests compare a daemon that may poll at any
        // moment with a reference that syncs between batches).
        let mut worlds: Vec<_> = self.inner.worlds.iter().map(write).collect();
        for _ in 0..n {
            let w = engine.rng.index(worlds.len());
            let world = &mut worlds[w];
            let now = engine.clock.tick();
            let applied = mutate::random(world, now, &mut engine.rng);
            if let Some(applied) = applied {
                out.push(engine.record(now, world, applied));
            }
        }
        out
    }

    /// Applies one targeted mutation.
    pub fn apply(
        &self,
        integration_id: &str,
        application_id: &str,
        m: Mutation,
    ) -> Result<TruthEntry, SimError> {
        self.change(integration_id, |world, now, rng| {
            let i = world
                .app_index(application_id)
                .ok_or_else(|| SimError::UnknownApplication(application_id.to_owned()))?;
            mutate::apply(world, i, m, now, rng)
        })
    }

    /// Adds a new application (at the first stage of a random job) to an integration.
    pub fn create_application(&self, integration_id: &str) -> Result<TruthEntry, SimError> {
        self.change(integration_id, |world, now, rng| {
            mutate::create_application(world, None, now, rng)
        })
    }

    fn change(
        &self,
        integration_id: &str,
        f: impl FnOnce(&mut World, Ms, &mut super::rng::Rng) -> Result<Applied, SimError>,
    ) -> Result<TruthEntry, SimError> {
        let w = self
            .world_index(integration_id)
            .ok_or_else(|| SimError::UnknownIntegration(integration_id.to_owned()))?;
        let mut engine = lock(&self.inner.engine);
        let mut world = write(&self.inner.worlds[w]);
        let now = engine.clock.tick();
        let applied = f(&mut world, now, &mut engine.rng)?;
        Ok(engine.record(now, &world, applied))
    }

    /// The whole truth log.
    pub fn truth(&self) -> Vec<TruthEntry> {
        self.truth_since(0)
    }

    /// Truth entries with `seq > since`.
    pub fn truth_since(&self, since: u64) -> Vec<TruthEntry> {
        lock(&self.inner.engine).since(since).to_vec()
    }

    /// The newest truth sequence number (0 before any change).
    pub fn last_seq(&self) -> u64 {
        lock(&self.inner.engine).last_seq()
    }

    /// Replaces the fault settings (rates, parameters and scripts).
    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), SimError> {
        faults.validate().map_err(SimError::NotApplicable)?;
        lock(&self.inner.faults).config = faults;
        Ok(())
    }

    /// The current fault settings, with what is left of the scripts.
    pub fn faults(&self) -> FaultConfig {
        lock(&self.inner.faults).config.clone()
    }

    /// Appends a scripted fault.
    pub fn script_fault(&self, fault: ScriptedFault) {
        lock(&self.inner.faults).config.script.push(fault);
    }

    /// The current wire view of an application (deleted ones included).
    pub fn application(&self, integration_id: &str, application_id: &str) -> Option<Application> {
        let world = read(&self.inner.worlds[self.world_index(integration_id)?]);
        world.render(world.app_index(application_id)?)
    }

    /// Every application id of an integration, in listing order (deleted ones included).
    pub fn application_ids(&self, integration_id: &str) -> Vec<String> {
        let Some(w) = self.world_index(integration_id) else {
            return Vec::new();
        };
        let world = read(&self.inner.worlds[w]);
        (0..world.apps.len() as u32)
            .map(|i| world.app_id(i))
            .collect()
    }

    /// Runs `f` on an integration's world under its read lock (for tests and tools that
    /// need stage or job ids).
    pub fn with_world<R>(&self, integration_id: &str, f: impl FnOnce(&World) -> R) -> Option<R> {
        let world = read(&self.inner.worlds[self.world_index(integration_id)?]);
        Some(f(&world))
    }

    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        let mut stats = lock(&self.inner.stats).clone();
        stats.truth_seq = self.last_seq();
        for (id, world) in self.inner.ids.iter().zip(&self.inner.worlds) {
            stats
                .integrations
                .entry(id.clone())
                .or_default()
                .applications = read(world).apps.len() as u64;
        }
        stats
    }

    /// `GET /v1/ats/applications` requests received so far.
    pub fn requests_served(&self) -> u64 {
        lock(&self.inner.stats).requests
    }

    pub(crate) fn update_stats(&self, f: impl FnOnce(&mut SimStats)) {
        f(&mut lock(&self.inner.stats));
    }

    pub(crate) fn decide_fault(&self, integration_id: &str, page: u32) -> Option<Decision> {
        lock(&self.inner.faults).decide(integration_id, page)
    }

    /// Whether `integration_id` exists.
    pub fn has_integration(&self, integration_id: &str) -> bool {
        self.world_index(integration_id).is_some()
    }

    /// One page: scans from the cursor position until `page_size` records match, then
    /// looks ahead for the next match so the last page says `next: null` (no empty tail
    /// page). A full listing scans each record once: O(n) overall.
    pub(crate) fn page(
        &self,
        integration_id: &str,
        params: &ListParams,
        cursor: Option<Cursor>,
    ) -> Result<PageOut, String> {
        let w = self
            .world_index(integration_id)
            .ok_or_else(|| format!("unknown integration {integration_id:?}"))?;
        let world = read(&self.inner.worlds[w]);
        let len = world.apps.len() as u32;
        let start = cursor.map_or(0, |c| c.position);
        if start > len {
            return Err("cursor points past the end of the listing".into());
        }
        let matcher = Matcher::new(&world, &params.filters);
        let mut results = Vec::with_capacity(params.page_size.min(len as usize));
        let mut pos = start;
        while pos < len && results.len() < params.page_size {
            if matcher.matches(pos)
                && let Some(app) = world.render(pos)
            {
                results.push(app);
            }
            pos += 1;
        }
        let next = (pos..len).find(|&p| matcher.matches(p)).map(|p| Cursor {
            position: p,
            page: cursor.map_or(1, |c| c.page) + 1,
        });
        Ok(PageOut { results, next })
    }
}
