//! A bounded run of STAMP's vacation (`examples/vacation.rs`) in each of
//! its synchronisations, with its end-of-run table checks: hytm's `atomic`
//! (whatever the suite's mode: auto, `HYTM_MODE=fallback`, the HTM model),
//! the software-only and global-lock sites, and the coarse lock.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/vacation.rs"]
mod vacation;

use vacation::{check_tables, run, Customer, Info, Method, Params, Reservation, Snapshot, CAR};

/// The standard sets' shape, scaled down to finish in moments on every
/// path (the HTM model included).
fn small(base: Params) -> Params {
    Params {
        relations: 512,
        tasks: 3000,
        ..base
    }
}

fn check(p: Params) {
    for method in [
        Method::Atomic,
        Method::Stm,
        Method::GlobalLock,
        Method::Lock,
    ] {
        let out = run(&p, method);
        println!(
            "{} {}: {:?}, {} tasks, {} changed, tables {:?}",
            p.flags(),
            method.name(),
            out.elapsed,
            out.tasks,
            out.changed,
            out.sizes
        );
        assert_eq!(out.check, Ok(()), "{} {}", p.flags(), method.name());
        assert_eq!(out.tasks, 3000);
        assert!(
            out.changed > 0,
            "{} {}: nothing changed",
            p.flags(),
            method.name()
        );
    }
}

#[test]
fn low_contention_tables_check() {
    check(small(Params::LOW));
}

#[test]
fn high_contention_tables_check() {
    check(small(Params::HIGH));
}

#[test]
fn the_same_tasks_give_the_same_tables_on_one_client() {
    // One client: every synchronisation runs the same task sequence, so
    // the tables end the same (sizes compared).
    let p = Params {
        clients: 1,
        ..small(Params::HIGH)
    };
    let sizes: Vec<[usize; 4]> = [Method::Atomic, Method::Stm, Method::Lock]
        .into_iter()
        .map(|m| run(&p, m).sizes)
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] == w[1]), "{sizes:?}");
}

#[test]
fn stamp_flags_parse() {
    let args: Vec<String> = "-n4 -q60 -u90 -r 16384 -t4096 --lock"
        .split(' ')
        .map(String::from)
        .collect();
    let (p, m) = vacation::parse_args(&args).unwrap();
    assert_eq!(p, Params::HIGH);
    assert_eq!(m, Method::Lock);
    assert!(vacation::parse_args(&["-x1".to_string()]).is_err());
    assert!(vacation::parse_args(&["-q101".to_string()]).is_err());
}

#[test]
fn the_checks_catch_broken_tables() {
    let p = Params {
        relations: 10,
        ..Params::LOW
    };
    let car = |used, free| Reservation {
        used,
        free,
        total: used + free,
        price: 50,
    };
    let holder = Customer {
        infos: vec![Info {
            kind: CAR,
            id: 3,
            price: 50,
        }],
    };
    let snapshot = |cars: Vec<(i64, Reservation)>, customers: Vec<(i64, Customer)>| {
        let mut s = Snapshot {
            lens: [cars.len(), 0, 0, customers.len()],
            ..Snapshot::default()
        };
        s.tables[CAR] = cars.into_iter().collect();
        s.customers = customers.into_iter().collect();
        s
    };
    // Consistent: car 3 used once, by customer 1.
    let good = snapshot(vec![(3, car(1, 99))], vec![(1, holder.clone())]);
    assert_eq!(check_tables(&p, &good), Ok(()));
    // Used twice, held once.
    let s = snapshot(vec![(3, car(2, 98))], vec![(1, holder.clone())]);
    assert!(check_tables(&p, &s).unwrap_err().contains("used"));
    // Held, but gone from its table.
    let s = snapshot(vec![], vec![(1, holder.clone())]);
    assert!(check_tables(&p, &s)
        .unwrap_err()
        .contains("not in its table"));
    // used + free != total.
    let mut bad = car(1, 99);
    bad.total = 99;
    let s = snapshot(vec![(3, bad)], vec![(1, holder.clone())]);
    assert!(check_tables(&p, &s).unwrap_err().contains("invalid"));
    // A table whose length disagrees with its entries.
    let mut s = snapshot(vec![(3, car(1, 99))], vec![(1, holder)]);
    s.lens[CAR] = 2;
    assert!(check_tables(&p, &s).unwrap_err().contains("lengths"));
}
