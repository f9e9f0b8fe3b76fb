//! A small Lisp whose every value lives in a `GcHeap<Tlsf>`.
//!
//! ```sh
//! cargo run --release -p stratalloc-gc --example lisp
//! ```
//!
//! Conses, closures and environment frames are collected objects; the
//! interpreter holds what it is working on in [`Root`]s, and stores
//! [`Gc`] handles inside objects. The threshold is set low (64 KiB) so
//! collections run in the middle of evaluation, many times: every result is
//! checked, and after the last root is dropped the region heap is empty.
//!
//! Forms: `quote`, `if`, `define`, `lambda`, `begin`; built-ins `+ - * < =
//! cons car cdr null?`. Integers, symbols, lists, closures.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use stratalloc_core::strategies::tlsf::Tlsf;
use stratalloc_core::{Region, RegionHeap};
use stratalloc_gc::{Gc, GcHeap, Root, Trace, Tracer};

type Heap = GcHeap<Tlsf>;
type V<'h> = Root<'h, Value>;
type Prim = for<'h> fn(&'h Heap, &[V<'h>]) -> Result<V<'h>, String>;

enum Value {
    Nil,
    Int(i64),
    Sym(String),
    Cons(Gc<Value>, Gc<Value>),
    Lambda {
        params: Gc<Value>,
        body: Gc<Value>,
        env: Gc<Env>,
    },
    Prim(&'static str, Prim),
}

impl Trace for Value {
    fn trace(&self, t: &mut Tracer<'_>) {
        match self {
            Value::Cons(a, d) => {
                t.edge(*a);
                t.edge(*d);
            }
            Value::Lambda { params, body, env } => {
                t.edge(*params);
                t.edge(*body);
                t.edge(*env);
            }
            Value::Nil | Value::Int(_) | Value::Sym(_) | Value::Prim(..) => {}
        }
    }
}

struct Env {
    vars: RefCell<Vec<(String, Gc<Value>)>>,
    parent: Option<Gc<Env>>,
}
stratalloc_gc::trace_fields!(Env { vars, parent });

fn new<'h>(heap: &'h Heap, v: Value) -> V<'h> {
    heap.alloc(v).ok().expect("the Lisp heap is large enough")
}

fn get<'h, T: 'static>(heap: &'h Heap, gc: Gc<T>) -> Root<'h, T> {
    heap.root(gc).expect("reachable values are never collected")
}

// ---- reader -------------------------------------------------------------

fn tokens(src: &str) -> Vec<String> {
    src.replace('(', " ( ")
        .replace(')', " ) ")
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn read<'h>(heap: &'h Heap, toks: &[String], pos: &mut usize) -> Result<V<'h>, String> {
    let tok = toks.get(*pos).ok_or("unexpected end of input")?;
    *pos += 1;
    match tok.as_str() {
        "(" => {
            let mut items = Vec::new();
            while toks.get(*pos).map(String::as_str) != Some(")") {
                items.push(read(heap, toks, pos)?);
            }
            *pos += 1;
            Ok(list(heap, &items))
        }
        ")" => Err("unexpected )".into()),
        t => Ok(match t.parse::<i64>() {
            Ok(n) => new(heap, Value::Int(n)),
            Err(_) => new(heap, Value::Sym(t.into())),
        }),
    }
}

fn list<'h>(heap: &'h Heap, items: &[V<'h>]) -> V<'h> {
    let mut acc = new(heap, Value::Nil);
    for it in items.iter().rev() {
        acc = new(heap, Value::Cons(Root::gc(it), Root::gc(&acc)));
    }
    acc
}

fn to_vec<'h>(heap: &'h Heap, mut l: V<'h>) -> Result<Vec<V<'h>>, String> {
    let mut out = Vec::new();
    loop {
        let next = match &*l {
            Value::Nil => return Ok(out),
            Value::Cons(a, d) => {
                out.push(get(heap, *a));
                get(heap, *d)
            }
            _ => return Err("not a proper list".into()),
        };
        l = next;
    }
}

fn show(heap: &Heap, v: &Value) -> String {
    match v {
        Value::Nil => "()".into(),
        Value::Int(n) => n.to_string(),
        Value::Sym(s) => s.clone(),
        Value::Cons(..) => {
            let mut parts = Vec::new();
            let mut at = match v {
                Value::Cons(a, d) => {
                    parts.push(show(heap, &get(heap, *a)));
                    get(heap, *d)
                }
                _ => unreachable!(),
            };
            loop {
                let next = match &*at {
                    Value::Cons(a, d) => {
                        parts.push(show(heap, &get(heap, *a)));
                        get(heap, *d)
                    }
                    Value::Nil => break,
                    other => {
                        parts.push(".".into());
                        parts.push(show(heap, other));
                        break;
                    }
                };
                at = next;
            }
            format!("({})", parts.join(" "))
        }
        Value::Lambda { .. } => "<lambda>".into(),
        Value::Prim(name, _) => format!("<{name}>"),
    }
}

// ---- evaluator ----------------------------------------------------------

fn lookup<'h>(heap: &'h Heap, env: &Root<'h, Env>, name: &str) -> Result<V<'h>, String> {
    let mut e = env.clone();
    loop {
        if let Some((_, v)) = e.vars.borrow().iter().rev().find(|(n, _)| n == name) {
            return Ok(get(heap, *v));
        }
        e = match e.parent {
            Some(p) => get(heap, p),
            None => return Err(format!("unbound symbol {name}")),
        };
    }
}

fn int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(n) => Ok(*n),
        _ => Err("expected an integer".into()),
    }
}

fn eval<'h>(heap: &'h Heap, x: &V<'h>, env: &Root<'h, Env>) -> Result<V<'h>, String> {
    let (head, tail) = match &**x {
        Value::Sym(s) => return lookup(heap, env, s),
        Value::Cons(h, t) => (get(heap, *h), get(heap, *t)),
        _ => return Ok(x.clone()),
    };
    let args = to_vec(heap, tail)?;
    if let Value::Sym(s) = &*head {
        match s.as_str() {
            "quote" => return args.first().cloned().ok_or("quote: no argument".into()),
            "if" => {
                let [c, a, b] = &args[..] else {
                    return Err("if: 3 arguments".into());
                };
                let c = eval(heap, c, env)?;
                let truthy = !matches!(&*c, Value::Nil | Value::Int(0));
                return eval(heap, if truthy { a } else { b }, env);
            }
            "define" => {
                let [name, e] = &args[..] else {
                    return Err("define: 2 arguments".into());
                };
                let Value::Sym(name) = &**name else {
                    return Err("define: a symbol".into());
                };
                let v = eval(heap, e, env)?;
                env.vars.borrow_mut().push((name.clone(), Root::gc(&v)));
                return Ok(v);
            }
            "lambda" => {
                let [params, body] = &args[..] else {
                    return Err("lambda: 2 arguments".into());
                };
                return Ok(new(
                    heap,
                    Value::Lambda {
                        params: Root::gc(params),
                        body: Root::gc(body),
                        env: Root::gc(env),
                    },
                ));
            }
            "begin" => {
                let mut last = new(heap, Value::Nil);
                for a in &args {
                    last = eval(heap, a, env)?;
                }
                return Ok(last);
            }
            _ => {}
        }
    }
    let f = eval(heap, &head, env)?;
    let vals = args
        .iter()
        .map(|a| eval(heap, a, env))
        .collect::<Result<Vec<_>, _>>()?;
    match &*f {
        Value::Prim(_, p) => p(heap, &vals),
        Value::Lambda {
            params,
            body,
            env: closure,
        } => {
            let names = to_vec(heap, get(heap, *params))?;
            if names.len() != vals.len() {
                return Err("wrong number of arguments".into());
            }
            let mut vars = Vec::new();
            for (n, v) in names.iter().zip(&vals) {
                let Value::Sym(n) = &**n else {
                    return Err("parameter is not a symbol".into());
                };
                vars.push((n.clone(), Root::gc(v)));
            }
            let frame = heap
                .alloc(Env {
                    vars: RefCell::new(vars),
                    parent: Some(*closure),
                })
                .ok()
                .expect("room");
            eval(heap, &get(heap, *body), &frame)
        }
        _ => Err(format!("not a function: {}", show(heap, &f))),
    }
}

fn arith<'h>(heap: &'h Heap, a: &[V<'h>], f: fn(i64, i64) -> i64) -> Result<V<'h>, String> {
    let [x, y] = a else {
        return Err("2 arguments".into());
    };
    Ok(new(heap, Value::Int(f(int(x)?, int(y)?))))
}

fn globals(heap: &Heap) -> Root<'_, Env> {
    let prims: [(&'static str, Prim); 9] = [
        ("+", |h, a| arith(h, a, |x, y| x + y)),
        ("-", |h, a| arith(h, a, |x, y| x - y)),
        ("*", |h, a| arith(h, a, |x, y| x * y)),
        ("<", |h, a| arith(h, a, |x, y| (x < y) as i64)),
        ("=", |h, a| arith(h, a, |x, y| (x == y) as i64)),
        ("cons", |h, a| match a {
            [x, y] => Ok(new(h, Value::Cons(Root::gc(x), Root::gc(y)))),
            _ => Err("cons: 2 arguments".into()),
        }),
        ("car", |h, a| match a.first().map(|v| &**v) {
            Some(Value::Cons(x, _)) => Ok(get(h, *x)),
            _ => Err("car of a non-pair".into()),
        }),
        ("cdr", |h, a| match a.first().map(|v| &**v) {
            Some(Value::Cons(_, y)) => Ok(get(h, *y)),
            _ => Err("cdr of a non-pair".into()),
        }),
        ("null?", |h, a| {
            Ok(new(
                h,
                Value::Int(matches!(a.first().map(|v| &**v), Some(Value::Nil)) as i64),
            ))
        }),
    ];
    let env = heap
        .alloc(Env {
            vars: RefCell::new(Vec::new()),
            parent: None,
        })
        .ok()
        .expect("room");
    for (name, p) in prims {
        let v = new(heap, Value::Prim(name, p));
        env.vars.borrow_mut().push((name.into(), Root::gc(&v)));
    }
    env
}

const PROGRAM: &[(&str, &str)] = &[
    ("(define fib (lambda (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2))))))", "<lambda>"),
    ("(fib 20)", "6765"),
    ("(define range (lambda (a b) (if (< a b) (cons a (range (+ a 1) b)) (quote ()))))", "<lambda>"),
    ("(define map (lambda (f l) (if (null? l) (quote ()) (cons (f (car l)) (map f (cdr l))))))", "<lambda>"),
    ("(define sum (lambda (l) (if (null? l) 0 (+ (car l) (sum (cdr l))))))", "<lambda>"),
    ("(sum (map (lambda (x) (* x x)) (range 0 1000)))", "332833500"),
    ("(define loop (lambda (i acc) (if (= i 0) acc (loop (- i 1) (+ acc (sum (range 0 100)))))))", "<lambda>"),
    ("(loop 200 0)", "990000"),
    ("(map (lambda (x) (* x 10)) (range 1 6))", "(10 20 30 40 50)"),
    ("(begin (define p (cons 1 2)) (cons p (quote (a b))))", "((1 . 2) a b)"),
];

fn main() {
    let mem: &'static mut [MaybeUninit<u8>] =
        Box::leak(vec![MaybeUninit::<u8>::uninit(); 8 << 20].into_boxed_slice());
    let mut tlsf = Tlsf::new();
    // SAFETY: the leaked slice lives for the rest of the process, used by
    // nothing else.
    unsafe { tlsf.add_region(Region::from_static(mem)) }.expect("add_region");
    let heap = GcHeap::new(tlsf).with_threshold(64 << 10);
    let mut failures = 0;
    {
        let env = globals(&heap);
        for (src, want) in PROGRAM {
            let toks = tokens(src);
            let mut pos = 0;
            let expr = read(&heap, &toks, &mut pos).expect("parse");
            let got = match eval(&heap, &expr, &env) {
                Ok(v) => show(&heap, &v),
                Err(e) => format!("error: {e}"),
            };
            let ok = got == *want;
            failures += !ok as u32;
            println!("{} {src}\n   => {got}", if ok { "ok  " } else { "FAIL" });
            heap.check().expect("heap check");
        }
        let st = heap.stats();
        println!(
            "\n{} objects allocated ({} KiB), {} collections ({} automatic), {} freed, {} live ({} KiB), peak {} KiB",
            st.allocated_objects,
            st.allocated_bytes >> 10,
            st.collections,
            st.automatic_collections,
            st.freed_objects,
            st.live_objects,
            st.live_bytes >> 10,
            st.peak_live_bytes >> 10
        );
    }
    let r = heap.collect();
    println!(
        "after dropping the global environment: {} objects freed, {} live, region heap in use {} bytes",
        r.freed_objects,
        r.live_objects,
        heap.heap_stats().in_use
    );
    heap.check().expect("heap check");
    assert_eq!(heap.heap_stats().in_use, 0, "no leak");
    assert_eq!(failures, 0, "every result as expected");
}
