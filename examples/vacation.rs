//! STAMP's vacation (Cao Minh, Chung, Kozyrakis, Olukotun: "STAMP:
//! Stanford Transactional Applications for Multi-Processing", IISWC 2008),
//! ported to Rust on hytm's `TMap`: a travel reservation system whose
//! client threads run transactions over four tables (cars, flights, rooms,
//! customers).
//!
//! ```text
//! cargo run --release --example vacation -- -n2 -q90 -u98 -r16384 -t4096        # low contention
//! cargo run --release --example vacation -- -n4 -q60 -u90 -r16384 -t4096        # high contention
//! HYTM_MODE=fallback cargo run --release --example vacation -- -n2 -q90 -u98 -r16384 -t4096
//! cargo run --release --example vacation -- --lock -n2 -q90 -u98 -r16384 -t4096 # one coarse lock
//! ```
//!
//! Options, as STAMP's (`-n2` or `-n 2`): `-c` clients (threads; default
//! 2 here, the cores of the development machine, where STAMP's is 1), `-n`
//! queries per task, `-q` % of the relations queried, `-u` % of user
//! (reservation) tasks, `-r` relations per table, `-t` tasks in all. The
//! synchronisation: `atomic` (default: hytm's `atomic`, whatever
//! `HYTM_MODE` says), `--stm` (a site that never tries hardware: the NOrec
//! software path in process), `--global-lock` (a site whose fallback is
//! hytm's global lock, serial mode), `--lock` (the same client and manager
//! code on `std::collections::HashMap`s under one `std::sync::Mutex`: the
//! coarse-lock peer).
//!
//! The tasks, as STAMP's `client.c`: MAKE_RESERVATION (query the price of
//! up to `-n` random items, add the customer, reserve the dearest item of
//! each kind found), DELETE_CUSTOMER (bill and remove a random customer,
//! cancelling their reservations), UPDATE_TABLES (add or remove up to
//! `-n` random items). `manager.c`'s and `reservation.c`'s operations
//! are ported one for one; STAMP's red-black trees are `TMap`s here. At the
//! end the tables are checked (STAMP's `checkTables`, and more): every
//! reservation has used + free = total with none negative, every
//! customer's reservations exist and are listed once, and each item's used
//! count equals the number of customers holding it; the program exits 1 if
//! a check fails.
//!
//! Without RTM (the development machine), `atomic` runs the software
//! fallback: the figures it prints are the fallback's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hytm::{FallbackKind, Policy, Restart, Site, TMap, Tx};

/// The reservation tables, as STAMP's `reservation_type_t`.
pub const CAR: usize = 0;
pub const FLIGHT: usize = 1;
pub const ROOM: usize = 2;
const KINDS: usize = 3;
const KIND_NAMES: [&str; KINDS] = ["car", "flight", "room"];

/// One item (a car, flight or room id): `reservation_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub used: i64,
    pub free: i64,
    pub total: i64,
    pub price: i64,
}

impl Reservation {
    fn new(total: i64, price: i64) -> Reservation {
        Reservation {
            used: 0,
            free: total,
            total,
            price,
        }
    }

    /// `checkReservation`: what every committed reservation satisfies.
    fn is_valid(&self) -> bool {
        self.used >= 0
            && self.free >= 0
            && self.total >= 0
            && self.used + self.free == self.total
            && self.price >= 0
    }
}

/// A customer's reservation of one item: `reservation_info_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    pub kind: usize,
    pub id: i64,
    pub price: i64,
}

/// `customer_t`: the customer's reservations, sorted by (kind, id) and
/// unique, as STAMP's sorted list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Customer {
    pub infos: Vec<Info>,
}

impl Customer {
    /// `customer_addReservationInfo`: false if already listed.
    fn add(&mut self, info: Info) -> bool {
        match self
            .infos
            .binary_search_by_key(&(info.kind, info.id), |i| (i.kind, i.id))
        {
            Ok(_) => false,
            Err(at) => {
                self.infos.insert(at, info);
                true
            }
        }
    }

    /// `customer_getBill`.
    fn bill(&self) -> i64 {
        self.infos.iter().map(|i| i.price).sum()
    }
}

/// The table operations the manager needs, on either synchronisation: a
/// hytm transaction over `TMap`s, or `HashMap`s under one lock.
pub trait Db {
    type Err;
    fn find(&mut self, kind: usize, id: i64) -> Result<Option<Reservation>, Self::Err>;
    fn put(&mut self, kind: usize, id: i64, r: Reservation) -> Result<(), Self::Err>;
    fn remove(&mut self, kind: usize, id: i64) -> Result<bool, Self::Err>;
    fn customer(&mut self, id: i64) -> Result<Option<Customer>, Self::Err>;
    fn has_customer(&mut self, id: i64) -> Result<bool, Self::Err>;
    fn put_customer(&mut self, id: i64, c: Customer) -> Result<(), Self::Err>;
    fn remove_customer(&mut self, id: i64) -> Result<bool, Self::Err>;
    /// STAMP's `TM_RESTART`, for states a consistent transaction never
    /// sees (hytm's transactions are opaque, so it is not expected).
    fn restart(&mut self) -> Self::Err;
}

// ---------------------------------------------------------------------
// manager.c

/// `addReservation`: adds `num` (negative: removes) items at `price` (-1
/// keeps the price); removes the entry when its total reaches 0.
fn add_reservation<D: Db>(
    db: &mut D,
    kind: usize,
    id: i64,
    num: i64,
    price: i64,
) -> Result<bool, D::Err> {
    let Some(mut r) = db.find(kind, id)? else {
        if num < 1 || price < 0 {
            return Ok(false);
        }
        db.put(kind, id, Reservation::new(num, price))?;
        return Ok(true);
    };
    // reservation_addToTotal
    if r.free + num < 0 {
        return Ok(false);
    }
    r.free += num;
    r.total += num;
    if !r.is_valid() {
        return Err(db.restart());
    }
    if r.total == 0 {
        if !db.remove(kind, id)? {
            return Err(db.restart());
        }
    } else {
        // reservation_updatePrice: a negative price keeps the old one.
        if price >= 0 {
            r.price = price;
        }
        db.put(kind, id, r)?;
    }
    Ok(true)
}

/// `manager_deleteFlight`: only a flight nobody holds a seat on.
fn delete_flight<D: Db>(db: &mut D, id: i64) -> Result<bool, D::Err> {
    let Some(r) = db.find(FLIGHT, id)? else {
        return Ok(false);
    };
    if r.used > 0 {
        return Ok(false);
    }
    add_reservation(db, FLIGHT, id, -r.total, -1)
}

/// `manager_addCustomer`.
fn add_customer<D: Db>(db: &mut D, id: i64) -> Result<bool, D::Err> {
    if db.has_customer(id)? {
        return Ok(false);
    }
    db.put_customer(id, Customer::default())?;
    Ok(true)
}

/// `manager_deleteCustomer`: cancels the customer's reservations, then
/// removes the customer.
fn delete_customer<D: Db>(db: &mut D, id: i64) -> Result<bool, D::Err> {
    let Some(customer) = db.customer(id)? else {
        return Ok(false);
    };
    for info in &customer.infos {
        let Some(mut r) = db.find(info.kind, info.id)? else {
            return Err(db.restart());
        };
        // reservation_cancel
        if r.used < 1 {
            return Err(db.restart());
        }
        r.used -= 1;
        r.free += 1;
        db.put(info.kind, info.id, r)?;
    }
    if !db.remove_customer(id)? {
        return Err(db.restart());
    }
    Ok(true)
}

/// `queryNumFree`: -1 if absent.
fn query_free<D: Db>(db: &mut D, kind: usize, id: i64) -> Result<i64, D::Err> {
    Ok(db.find(kind, id)?.map_or(-1, |r| r.free))
}

/// `queryPrice`: -1 if absent.
fn query_price<D: Db>(db: &mut D, kind: usize, id: i64) -> Result<i64, D::Err> {
    Ok(db.find(kind, id)?.map_or(-1, |r| r.price))
}

/// `manager_queryCustomerBill`: -1 if absent.
fn query_customer_bill<D: Db>(db: &mut D, id: i64) -> Result<i64, D::Err> {
    Ok(db.customer(id)?.map_or(-1, |c| c.bill()))
}

/// `reserve`: one item of `kind` for the customer, if both exist, an item
/// is free and the customer does not hold this one yet.
fn reserve<D: Db>(db: &mut D, kind: usize, customer_id: i64, id: i64) -> Result<bool, D::Err> {
    let Some(mut customer) = db.customer(customer_id)? else {
        return Ok(false);
    };
    let Some(mut r) = db.find(kind, id)? else {
        return Ok(false);
    };
    // reservation_make
    if r.free < 1 {
        return Ok(false);
    }
    r.used += 1;
    r.free -= 1;
    if !customer.add(Info {
        kind,
        id,
        price: r.price,
    }) {
        // Already held: STAMP undoes its reservation_make; here nothing
        // was written yet.
        return Ok(false);
    }
    db.put(kind, id, r)?;
    db.put_customer(customer_id, customer)?;
    Ok(true)
}

// ---------------------------------------------------------------------
// client.c

/// One task, drawn before its transaction starts (as STAMP's client does),
/// so that a rerun does the same.
#[derive(Clone, Debug)]
pub enum Task {
    MakeReservation {
        customer: i64,
        queries: Vec<(usize, i64)>,
    },
    DeleteCustomer {
        customer: i64,
    },
    /// (kind, id, Some(price) to add, None to remove).
    UpdateTables {
        updates: Vec<(usize, i64, Option<i64>)>,
    },
}

/// MAKE_RESERVATION, DELETE_CUSTOMER or UPDATE_TABLES: the transaction's
/// body. Returns whether it changed anything.
fn run_task<D: Db>(db: &mut D, task: &Task) -> Result<bool, D::Err> {
    match task {
        Task::MakeReservation { customer, queries } => {
            let mut max_price = [-1i64; KINDS];
            let mut max_id = [-1i64; KINDS];
            let mut found = false;
            for &(kind, id) in queries {
                let mut price = -1;
                if query_free(db, kind, id)? >= 0 {
                    price = query_price(db, kind, id)?;
                }
                if price > max_price[kind] {
                    max_price[kind] = price;
                    max_id[kind] = id;
                    found = true;
                }
            }
            let mut changed = false;
            if found {
                changed |= add_customer(db, *customer)?;
            }
            for kind in [CAR, FLIGHT, ROOM] {
                if max_id[kind] > 0 {
                    changed |= reserve(db, kind, *customer, max_id[kind])?;
                }
            }
            Ok(changed)
        }
        Task::DeleteCustomer { customer } => {
            if query_customer_bill(db, *customer)? >= 0 {
                return delete_customer(db, *customer);
            }
            Ok(false)
        }
        Task::UpdateTables { updates } => {
            let mut changed = false;
            for &(kind, id, add) in updates {
                changed |= match (add, kind) {
                    (Some(price), _) => add_reservation(db, kind, id, 100, price)?,
                    (None, FLIGHT) => delete_flight(db, id)?,
                    // manager_deleteCar / manager_deleteRoom: 100 fewer.
                    (None, _) => add_reservation(db, kind, id, -100, -1)?,
                };
            }
            Ok(changed)
        }
    }
}

/// STAMP's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// `-c`: clients (threads).
    pub clients: usize,
    /// `-n`: queries (or updates) per task, at most.
    pub queries: u64,
    /// `-q`: % of the relations queried.
    pub percent_queried: u64,
    /// `-u`: % of user (MAKE_RESERVATION) tasks.
    pub percent_user: u64,
    /// `-r`: relations per table.
    pub relations: u64,
    /// `-t`: tasks in all.
    pub tasks: u64,
}

impl Params {
    /// STAMP's low-contention set with 2 clients.
    pub const LOW: Params = Params {
        clients: 2,
        queries: 2,
        percent_queried: 90,
        percent_user: 98,
        relations: 16384,
        tasks: 4096,
    };

    /// STAMP's high-contention set with 2 clients.
    pub const HIGH: Params = Params {
        clients: 2,
        queries: 4,
        percent_queried: 60,
        percent_user: 90,
        relations: 16384,
        tasks: 4096,
    };

    /// `queryRange`: ids 1..=range are queried.
    pub fn query_range(&self) -> u64 {
        ((self.percent_queried as f64 / 100.0 * self.relations as f64) + 0.5) as u64
    }

    /// Tasks per client, as STAMP rounds them.
    pub fn tasks_per_client(&self) -> u64 {
        ((self.tasks as f64 / self.clients as f64) + 0.5) as u64
    }

    /// The command-line flags of this set.
    pub fn flags(&self) -> String {
        format!(
            "-c{} -n{} -q{} -u{} -r{} -t{}",
            self.clients,
            self.queries,
            self.percent_queried,
            self.percent_user,
            self.relations,
            self.tasks
        )
    }
}

/// STAMP's `random_generate`, in spirit: a seeded generator per client
/// (SplitMix64 here; STAMP's is a Mersenne twister).
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub fn generate(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `client_run`'s choice and draw of one task.
fn draw_task(rng: &mut Random, p: &Params) -> Task {
    let range = p.query_range().max(1);
    let r = rng.generate() % 100;
    if r < p.percent_user {
        let n = rng.generate() % p.queries + 1;
        let customer = (rng.generate() % range + 1) as i64;
        let queries = (0..n)
            .map(|_| {
                let kind = (rng.generate() % KINDS as u64) as usize;
                (kind, (rng.generate() % range + 1) as i64)
            })
            .collect();
        Task::MakeReservation { customer, queries }
    } else if r & 1 == 1 {
        Task::DeleteCustomer {
            customer: (rng.generate() % range + 1) as i64,
        }
    } else {
        let n = rng.generate() % p.queries + 1;
        let updates = (0..n)
            .map(|_| {
                let kind = (rng.generate() % KINDS as u64) as usize;
                let id = (rng.generate() % range + 1) as i64;
                let add =
                    (rng.generate() % 2 == 1).then(|| ((rng.generate() % 5) * 10 + 50) as i64);
                (kind, id, add)
            })
            .collect();
        Task::UpdateTables { updates }
    }
}

// ---------------------------------------------------------------------
// The synchronisations: hytm transactions over TMaps, or one coarse lock.

/// The manager on `TMap`s, for hytm's transactions.
pub struct TxManager {
    pub tables: [TMap<i64, Reservation>; KINDS],
    pub customers: TMap<i64, Customer>,
}

struct TxDb<'a, 'env> {
    tx: &'a mut Tx<'env>,
    m: &'env TxManager,
}

impl Db for TxDb<'_, '_> {
    type Err = Restart;
    fn find(&mut self, kind: usize, id: i64) -> Result<Option<Reservation>, Restart> {
        self.m.tables[kind].get(self.tx, &id)
    }
    fn put(&mut self, kind: usize, id: i64, r: Reservation) -> Result<(), Restart> {
        self.m.tables[kind].insert(self.tx, id, r).map(drop)
    }
    fn remove(&mut self, kind: usize, id: i64) -> Result<bool, Restart> {
        Ok(self.m.tables[kind].remove(self.tx, &id)?.is_some())
    }
    fn customer(&mut self, id: i64) -> Result<Option<Customer>, Restart> {
        self.m.customers.get(self.tx, &id)
    }
    fn has_customer(&mut self, id: i64) -> Result<bool, Restart> {
        self.m.customers.contains_key(self.tx, &id)
    }
    fn put_customer(&mut self, id: i64, c: Customer) -> Result<(), Restart> {
        self.m.customers.insert(self.tx, id, c).map(drop)
    }
    fn remove_customer(&mut self, id: i64) -> Result<bool, Restart> {
        Ok(self.m.customers.remove(self.tx, &id)?.is_some())
    }
    fn restart(&mut self) -> Restart {
        Restart
    }
}

/// The manager on plain `HashMap`s, for the coarse lock.
#[derive(Default)]
pub struct LockManager {
    pub tables: [HashMap<i64, Reservation>; KINDS],
    pub customers: HashMap<i64, Customer>,
}

impl Db for LockManager {
    type Err = std::convert::Infallible;
    fn find(&mut self, kind: usize, id: i64) -> Result<Option<Reservation>, Self::Err> {
        Ok(self.tables[kind].get(&id).copied())
    }
    fn put(&mut self, kind: usize, id: i64, r: Reservation) -> Result<(), Self::Err> {
        self.tables[kind].insert(id, r);
        Ok(())
    }
    fn remove(&mut self, kind: usize, id: i64) -> Result<bool, Self::Err> {
        Ok(self.tables[kind].remove(&id).is_some())
    }
    fn customer(&mut self, id: i64) -> Result<Option<Customer>, Self::Err> {
        Ok(self.customers.get(&id).cloned())
    }
    fn has_customer(&mut self, id: i64) -> Result<bool, Self::Err> {
        Ok(self.customers.contains_key(&id))
    }
    fn put_customer(&mut self, id: i64, c: Customer) -> Result<(), Self::Err> {
        self.customers.insert(id, c);
        Ok(())
    }
    fn remove_customer(&mut self, id: i64) -> Result<bool, Self::Err> {
        Ok(self.customers.remove(&id).is_some())
    }
    fn restart(&mut self) -> Self::Err {
        // Under the lock nothing is inconsistent: a bug.
        panic!("vacation: an inconsistent table under the lock")
    }
}

/// How the clients synchronise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// hytm's `atomic` at a site with the default policy (`HYTM_MODE`
    /// decides: hardware where RTM is usable, else the software path).
    Atomic,
    /// A site that never tries hardware: the software path (hybrid NOrec
    /// where hardware transactions can run, striped where none can).
    Stm,
    /// A site whose fallback is hytm's global lock (serial mode).
    GlobalLock,
    /// `HashMap`s under one `std::sync::Mutex`.
    Lock,
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Atomic => "hytm atomic",
            Method::Stm => "hytm stm site",
            Method::GlobalLock => "hytm global-lock site",
            Method::Lock => "coarse std Mutex",
        }
    }
}

static ATOMIC: Site = Site::new("vacation");
static STM: Site = Site::with_policy("vacation stm", Policy::DEFAULT.hardware(false));
static GLOBAL_LOCK: Site = Site::with_policy(
    "vacation global-lock",
    Policy::DEFAULT.fallback(FallbackKind::GlobalLock),
);

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    /// The clients' time (initialisation and checks excluded).
    pub elapsed: Duration,
    /// Tasks run, and how many changed the tables.
    pub tasks: u64,
    pub changed: u64,
    /// The tables' sizes at the end: cars, flights, rooms, customers.
    pub sizes: [usize; 4],
    /// The end-of-run checks: `Err` names the first broken invariant.
    pub check: Result<(), String>,
    /// What the hytm site did during the clients' run (not for `Lock`).
    pub site: Option<SiteCounts>,
}

/// A hytm site's counters over the clients' run.
#[derive(Clone, Copy, Debug, Default)]
pub struct SiteCounts {
    pub executions: u64,
    pub hw_commits: u64,
    pub stm_commits: u64,
    pub stm_restarts: u64,
    pub serial: u64,
    pub global_lock: u64,
}

impl SiteCounts {
    fn of(site: &str) -> SiteCounts {
        let report = hytm::stats::snapshot();
        let Some(row) = report.site(site) else {
            return SiteCounts::default();
        };
        SiteCounts {
            executions: row.executions(),
            hw_commits: row.hw_commits,
            stm_commits: row.stm_commits,
            stm_restarts: row.stm_restarts,
            serial: row.serial,
            global_lock: row.fallback_lock,
        }
    }

    fn since(self, before: SiteCounts) -> SiteCounts {
        SiteCounts {
            executions: self.executions - before.executions,
            hw_commits: self.hw_commits - before.hw_commits,
            stm_commits: self.stm_commits - before.stm_commits,
            stm_restarts: self.stm_restarts - before.stm_restarts,
            serial: self.serial - before.serial,
            global_lock: self.global_lock - before.global_lock,
        }
    }
}

impl Outcome {
    pub fn tasks_per_sec(&self) -> f64 {
        self.tasks as f64 / self.elapsed.as_secs_f64()
    }
}

/// `initializeManager`'s contents: for each table (and the customers),
/// the ids 1..=r shuffled, each with (numTotal, price) drawn as STAMP does.
fn initial_rows(p: &Params) -> Vec<Vec<(i64, i64, i64)>> {
    let r = p.relations;
    let mut rng = Random::new(0);
    let mut ids: Vec<i64> = (1..=r as i64).collect();
    (0..=KINDS)
        .map(|_| {
            for _ in 0..r {
                let x = (rng.generate() % r) as usize;
                let y = (rng.generate() % r) as usize;
                ids.swap(x, y);
            }
            ids.iter()
                .map(|&id| {
                    let num = ((rng.generate() % 5) + 1) as i64 * 100;
                    let price = ((rng.generate() % 5) * 10 + 50) as i64;
                    (id, num, price)
                })
                .collect()
        })
        .collect()
}

/// One lock around the whole manager: the coarse-lock peer. The example
/// uses `std::sync::Mutex`; the data bench adds a pthread mutex.
pub trait CoarseLock: std::marker::Sync + Sized {
    fn new(m: LockManager) -> Self;
    fn with<R>(&self, f: impl FnOnce(&mut LockManager) -> R) -> R;
    fn into_inner(self) -> LockManager;
}

impl CoarseLock for Mutex<LockManager> {
    fn new(m: LockManager) -> Self {
        Mutex::new(m)
    }
    fn with<R>(&self, f: impl FnOnce(&mut LockManager) -> R) -> R {
        f(&mut self.lock().unwrap())
    }
    fn into_inner(self) -> LockManager {
        Mutex::into_inner(self).unwrap()
    }
}

/// Runs the clients on `HashMap`s under one lock of type `L`, then checks
/// the tables.
pub fn run_coarse<L: CoarseLock>(p: &Params) -> Outcome {
    let rows = initial_rows(p);
    let tasks = p.tasks_per_client() * p.clients as u64;
    let mut m = LockManager::default();
    for (kind, table) in rows.iter().enumerate() {
        for &(id, num, price) in table {
            let Ok(ok) = if kind < KINDS {
                add_reservation(&mut m, kind, id, num, price)
            } else {
                add_customer(&mut m, id)
            };
            assert!(ok, "initialisation");
        }
    }
    let m = L::new(m);
    let (elapsed, changed) = clients(p, |task| {
        let Ok(changed) = m.with(|m| run_task(m, task));
        changed
    });
    let m = m.into_inner();
    let snapshot = Snapshot {
        tables: m.tables.clone(),
        customers: m.customers.clone(),
        lens: [
            m.tables[CAR].len(),
            m.tables[FLIGHT].len(),
            m.tables[ROOM].len(),
            m.customers.len(),
        ],
    };
    finish(p, elapsed, tasks, changed, snapshot)
}

/// Runs the clients with `method`, then checks the tables.
pub fn run(p: &Params, method: Method) -> Outcome {
    if let Method::Lock = method {
        return run_coarse::<Mutex<LockManager>>(p);
    }
    let rows = initial_rows(p);
    let per_client = p.tasks_per_client();
    let tasks = per_client * p.clients as u64;
    let site = match method {
        Method::Stm => &STM,
        Method::GlobalLock => &GLOBAL_LOCK,
        _ => &ATOMIC,
    };
    let cap = p.relations as usize;
    let m = TxManager {
        tables: std::array::from_fn(|_| TMap::with_capacity(cap)),
        customers: TMap::with_capacity(cap),
    };
    for (kind, table) in rows.iter().enumerate() {
        for &(id, num, price) in table {
            let ok = site.atomic(|tx| {
                let mut db = TxDb { tx, m: &m };
                if kind < KINDS {
                    add_reservation(&mut db, kind, id, num, price)
                } else {
                    add_customer(&mut db, id)
                }
            });
            assert!(ok, "initialisation");
        }
    }
    let name = match method {
        Method::Stm => "vacation stm",
        Method::GlobalLock => "vacation global-lock",
        _ => "vacation",
    };
    let before = SiteCounts::of(name);
    let (elapsed, changed) = clients(p, |task| {
        site.atomic(|tx| run_task(&mut TxDb { tx, m: &m }, task))
    });
    let counts = SiteCounts::of(name).since(before);
    let snapshot = site.atomic(|tx| {
        let mut s = Snapshot::default();
        for kind in 0..KINDS {
            s.tables[kind] = m.tables[kind].entries(tx)?.into_iter().collect();
            s.lens[kind] = m.tables[kind].len(tx)?;
        }
        s.customers = m.customers.entries(tx)?.into_iter().collect();
        s.lens[KINDS] = m.customers.len(tx)?;
        Ok(s)
    });
    Outcome {
        site: Some(counts),
        ..finish(p, elapsed, tasks, changed, snapshot)
    }
}

/// Runs `p.clients` threads of `p.tasks_per_client()` tasks each, each
/// task through `exec`; returns the time from the common start to the
/// last client's end, and how many tasks changed something.
fn clients(p: &Params, exec: impl Fn(&Task) -> bool + std::marker::Sync) -> (Duration, u64) {
    let barrier = std::sync::Barrier::new(p.clients + 1);
    let per_client = p.tasks_per_client();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..p.clients)
            .map(|id| {
                let (barrier, exec) = (&barrier, &exec);
                s.spawn(move || {
                    // Drawn as the client goes, as STAMP's does, but with
                    // the draw outside the timed transaction either way.
                    let mut rng = Random::new(id as u64 + 1);
                    barrier.wait();
                    let mut changed = 0;
                    for _ in 0..per_client {
                        let task = draw_task(&mut rng, p);
                        changed += u64::from(exec(&task));
                    }
                    changed
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let changed = handles.into_iter().map(|h| h.join().unwrap()).sum();
        (start.elapsed(), changed)
    })
}

/// The tables after the run, read in one transaction (or under the lock).
#[derive(Default)]
pub struct Snapshot {
    pub tables: [HashMap<i64, Reservation>; KINDS],
    pub customers: HashMap<i64, Customer>,
    /// Each table's own count of its entries (`TMap::len`).
    pub lens: [usize; 4],
}

fn finish(p: &Params, elapsed: Duration, tasks: u64, changed: u64, s: Snapshot) -> Outcome {
    Outcome {
        elapsed,
        tasks,
        changed,
        sizes: [
            s.tables[CAR].len(),
            s.tables[FLIGHT].len(),
            s.tables[ROOM].len(),
            s.customers.len(),
        ],
        check: check_tables(p, &s),
        site: None,
    }
}

/// `checkTables`, and the invariants it relies on.
pub fn check_tables(p: &Params, s: &Snapshot) -> Result<(), String> {
    let r = p.relations as i64;
    // The tables' lengths match their entries (unique ids: STAMP removes
    // each id and checks that a second removal fails).
    let entries = [
        s.tables[CAR].len(),
        s.tables[FLIGHT].len(),
        s.tables[ROOM].len(),
        s.customers.len(),
    ];
    if entries != s.lens {
        return Err(format!(
            "table lengths {:?} but {entries:?} entries",
            s.lens
        ));
    }
    // Every reservation is valid (checkReservation) and its id in range.
    for (kind, table) in s.tables.iter().enumerate() {
        for (&id, res) in table {
            if !(1..=r).contains(&id) {
                return Err(format!("{} id {id} out of range", KIND_NAMES[kind]));
            }
            if !res.is_valid() || res.total == 0 {
                return Err(format!("{} {id}: invalid {res:?}", KIND_NAMES[kind]));
            }
        }
    }
    // Every customer's reservations exist, are listed once in order, and
    // each item is used exactly as often as customers hold it.
    let mut held: [HashMap<i64, i64>; KINDS] = Default::default();
    for (&cid, c) in &s.customers {
        if !(1..=r).contains(&cid) {
            return Err(format!("customer id {cid} out of range"));
        }
        if !c
            .infos
            .windows(2)
            .all(|w| (w[0].kind, w[0].id) < (w[1].kind, w[1].id))
        {
            return Err(format!("customer {cid}: reservations not unique: {c:?}"));
        }
        for info in &c.infos {
            if !s.tables[info.kind].contains_key(&info.id) {
                return Err(format!(
                    "customer {cid} holds {} {} that is not in its table",
                    KIND_NAMES[info.kind], info.id
                ));
            }
            *held[info.kind].entry(info.id).or_default() += 1;
        }
    }
    for (kind, table) in s.tables.iter().enumerate() {
        for (&id, res) in table {
            let n = held[kind].get(&id).copied().unwrap_or(0);
            if res.used != n {
                return Err(format!(
                    "{} {id}: {} used, but {n} customers hold it",
                    KIND_NAMES[kind], res.used
                ));
            }
        }
    }
    Ok(())
}

/// Parses STAMP's flags (`-n2` or `-n 2`) and this port's modes.
pub fn parse_args(args: &[String]) -> Result<(Params, Method), String> {
    let mut p = Params {
        clients: 2,
        // STAMP's defaults for the rest.
        queries: 10,
        percent_queried: 90,
        percent_user: 80,
        relations: 1 << 16,
        tasks: 1 << 26,
    };
    let mut sync = Method::Atomic;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--lock" => sync = Method::Lock,
            "--stm" => sync = Method::Stm,
            "--global-lock" => sync = Method::GlobalLock,
            a if a.len() >= 2 && a.starts_with('-') && "cnqurt".contains(&a[1..2]) => {
                let value = if a.len() > 2 {
                    a[2..].to_string()
                } else {
                    it.next()
                        .ok_or_else(|| format!("{a} needs a value"))?
                        .clone()
                };
                let v: u64 = value
                    .parse()
                    .map_err(|_| format!("{a}: {value:?} is not a whole number"))?;
                match &a[1..2] {
                    "c" => p.clients = v as usize,
                    "n" => p.queries = v,
                    "q" => p.percent_queried = v,
                    "u" => p.percent_user = v,
                    "r" => p.relations = v,
                    _ => p.tasks = v,
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if p.clients == 0 || p.queries == 0 || p.relations == 0 {
        return Err("-c, -n and -r must be at least 1".into());
    }
    if p.percent_queried > 100 || p.percent_user > 100 {
        return Err("-q and -u are percentages (0 to 100)".into());
    }
    Ok((p, sync))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (p, sync) = match parse_args(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "vacation: {e}\nusage: vacation [--lock | --stm | --global-lock] [-c clients] [-n queries/task] [-q %queried] [-u %user] [-r relations] [-t tasks]"
            );
            std::process::exit(2);
        }
    };
    println!("vacation {}", p.flags());
    println!(
        "    synchronisation     = {}{}",
        sync.name(),
        if sync == Method::Lock {
            String::new()
        } else {
            format!(" (hytm mode {}: {})", hytm::mode(), hytm::mode_reason())
        }
    );
    println!(
        "    query range         = {}, tasks/client = {}",
        p.query_range(),
        p.tasks_per_client()
    );
    let out = run(&p, sync);
    println!(
        "Time = {:.6} s, {} tasks ({} changed the tables), {:.0} tasks/s",
        out.elapsed.as_secs_f64(),
        out.tasks,
        out.changed,
        out.tasks_per_sec()
    );
    println!(
        "    tables: {} cars, {} flights, {} rooms, {} customers",
        out.sizes[0], out.sizes[1], out.sizes[2], out.sizes[3]
    );
    if let Some(c) = out.site {
        println!(
            "    hytm during the run: {} transactions, {} hardware commits, {} software commits ({} restarts), {} serial, {} under the global lock",
            c.executions, c.hw_commits, c.stm_commits, c.stm_restarts, c.serial, c.global_lock
        );
    }
    match out.check {
        Ok(()) => println!("Checking tables... done."),
        Err(e) => {
            eprintln!("Checking tables... FAILED: {e}");
            std::process::exit(1);
        }
    }
}
