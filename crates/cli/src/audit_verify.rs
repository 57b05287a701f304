//! `portcullis audit verify`: the chain's links and signatures, then the witnesses.
//!
//! The chain alone cannot show that its newest events were deleted together with the
//! checkpoints that signed them; a witness (the signed head published outside the store)
//! can. The configuration's `[audit] witness` is checked by default, `--witness` names
//! others (a copy kept elsewhere, another gateway's). Exit status 1 for anything broken.

use std::path::PathBuf;

use anyhow::Context;
use portcullis_audit::{FileWitness, PublicKey, Witness, WitnessRef, check_witness};

use crate::audit_cmd::{StoreArgs, progress};

/// `audit verify`'s arguments.
#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The checkpoint key (hex or PEM), instead of the configuration's signing key.
    #[arg(long)]
    pub public_key: Option<String>,
    /// A witness file to check the store against, instead of the configuration's
    /// `[audit] witness`; may be given several times (one per gateway).
    #[arg(long = "witness", value_name = "PATH")]
    pub witnesses: Vec<PathBuf>,
}

/// Verifies the chain and every witness; exits 1 naming the first problem.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let mut opened = args.store.open().await?;
    let key = match args.public_key {
        Some(k) => PublicKey::parse(&k)?,
        None => opened
            .key
            .context("give --public-key (the configuration's signing key is not readable)")?,
    };
    let witnesses = if args.witnesses.is_empty() {
        configured_witness(opened.config.as_ref())?
    } else {
        args.witnesses
    };
    let (total, _, _) = opened.store.extent().await?;
    let bar = progress(total, "verifying");
    let report =
        portcullis_audit::verify(&mut opened.store, &key, |done, _| bar.set_position(done)).await?;
    bar.finish_and_clear();
    if let Some(b) = &report.broken {
        println!(
            "BROKEN at event {}: {} (checked {} events before it)",
            b.seq, b.reason, report.events
        );
        std::process::exit(1);
    }
    let mut lines = Vec::new();
    for path in &witnesses {
        let shown = path.display();
        // A gateway creates its witness before it writes anything: missing means deleted.
        let Some(head) = FileWitness::new(path).read()? else {
            println!(
                "BROKEN: the witness {shown} does not exist (the store {} has {} events): the witness was deleted, or this is not its file",
                opened.location, report.events
            );
            std::process::exit(1);
        };
        let check = check_witness(&mut opened.store, &key, &head).await?;
        if !check.holds() {
            let what = match check {
                portcullis_audit::WitnessCheck::Truncated { .. } => "TRUNCATED",
                _ => "BROKEN",
            };
            println!(
                "{what}: {} (witness {shown}, store {})",
                check.describe(),
                opened.location
            );
            std::process::exit(1);
        }
        lines.push(format!("witness {shown}: {}", check.describe()));
    }
    println!(
        "ok: {} events, {} checkpoints signed by key {}; every link holds{}",
        report.events,
        report.checkpoints,
        key.id(),
        if report.unsigned > 0 {
            format!(
                " ({} newest events not yet covered by a checkpoint)",
                report.unsigned
            )
        } else {
            String::new()
        }
    );
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// The configuration's witness file, if it names one.
fn configured_witness(config: Option<&portcullis_gateway::Config>) -> anyhow::Result<Vec<PathBuf>> {
    let Some(w) = config.and_then(|c| c.audit.witness.as_deref()) else {
        return Ok(Vec::new());
    };
    match WitnessRef::parse(w)? {
        WitnessRef::File(path) => Ok(vec![path]),
    }
}
