//! Each Lambda role in the template allows exactly the AWS actions its crate calls — derived from the code,
//! not listed by hand. Every AWS call in this codebase names its IAM action once, in
//! `classify_sdk_error("service:Action", ...)`, in a core adapter (crates/dms-core/src) or in the Lambda crate.
//! For each Lambda of the template (crate from its `Code` path, role from its `Role`):
//!   1. parse core and the crate with `syn`; index every non-test function of core by name with the action
//!      strings in its body and the names of the functions and methods it calls;
//!   2. the crate's actions = the action strings in its own (non-test) code + those of every core function
//!      reachable from the names it calls (transitively through core);
//!   3. add the actions AWS requires alongside some of them (`IMPLIED`, each with its reason);
//!   4. compare with the role's Allow statements, ignoring `logs:*` (each role writes its own log group).
//!
//! Missing or extra actions fail the test. Matching by name over-approximates (a crate calling any
//! `describe_task` is taken to call the DMS one): a false "missing" is possible, a hidden call is not.
//! Crates the template names that do not exist yet are skipped with a note.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use integration_tests::lab::workspace_root;
use integration_tests::template::{
    lambda_functions, load, role_allowed_actions, template_path, VPC_ENI_ACTIONS,
};
use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Actions a role needs besides the one each call names, because AWS checks more than one for it.
const IMPLIED: &[(&str, &[&str], &str)] = &[
    (
        "sns:Publish",
        &["kms:GenerateDataKey*", "kms:Decrypt"],
        "the topic is encrypted with the stack's customer managed key; SNS uses the publisher's KMS \
         permissions (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html)",
    ),
    (
        "dms:StartReplicationTaskAssessmentRun",
        &["iam:PassRole"],
        "the run's ServiceAccessRoleArn is passed to DMS",
    ),
    (
        "ec2:AuthorizeSecurityGroupIngress",
        &["ec2:CreateTags"],
        "the only rule this code authorizes is tagged on creation (TagSpecifications), which IAM checks \
         as ec2:CreateTags (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html)",
    ),
    (
        "s3:GetObject",
        &["s3:ListBucket"],
        "without s3:ListBucket, S3 answers GetObject of a missing key with 403 AccessDenied instead of \
         404 NoSuchKey (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html)",
    ),
    (
        "s3:DeleteObjectVersion",
        &["s3:DeleteObject"],
        "DeleteObjects always needs s3:DeleteObject, and s3:DeleteObjectVersion for a version id \
         (https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html)",
    ),
];

const CLASSIFY: &str = "classify_sdk_error";

/// What one function body does: the action strings it classifies and the names it calls.
#[derive(Debug, Default, Clone)]
struct Body {
    actions: BTreeSet<String>,
    calls: BTreeSet<String>,
}

/// Every non-test function of a set of sources, by name (same-named functions are merged).
#[derive(Debug, Default)]
struct Index {
    functions: BTreeMap<String, Body>,
    /// `const NAME: &str = "..."` items, so an action may be named through a constant.
    string_consts: BTreeMap<String, String>,
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta.require_list().is_ok_and(|l| {
                l.tokens
                    .to_string()
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|t| t == "test")
            })
    }) || attrs.iter().any(|a| {
        a.path().is_ident("test") || a.path().segments.last().is_some_and(|s| s.ident == "test")
    })
}

/// Collects functions and string constants, skipping `#[cfg(test)]` modules and `#[test]` functions.
struct ItemCollector<'a> {
    index: &'a mut Index,
}

impl<'ast> Visit<'ast> for ItemCollector<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_cfg_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if !is_cfg_test(&i.attrs) {
            syn::visit::visit_item_impl(self, i);
        }
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_cfg_test(&f.attrs) {
            self.add(&f.sig.ident, &f.block);
        }
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_cfg_test(&f.attrs) {
            self.add(&f.sig.ident, &f.block);
        }
    }
    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.add(&f.sig.ident, block);
        }
    }
    fn visit_item_const(&mut self, c: &'ast syn::ItemConst) {
        if let syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) = c.expr.as_ref()
        {
            self.index
                .string_consts
                .insert(c.ident.to_string(), s.value());
        }
    }
}

impl ItemCollector<'_> {
    fn add(&mut self, name: &syn::Ident, block: &syn::Block) {
        let mut visitor = BodyVisitor::default();
        visitor.visit_block(block);
        let body = self.index.functions.entry(name.to_string()).or_default();
        body.actions.extend(visitor.actions);
        body.calls.extend(visitor.calls);
        body.calls.extend(
            visitor
                .classified_consts
                .into_iter()
                .map(|c| format!("const:{c}")),
        );
    }
}

#[derive(Default)]
struct BodyVisitor {
    actions: BTreeSet<String>,
    /// Constants used as the action argument, resolved once every file is read.
    classified_consts: BTreeSet<String>,
    calls: BTreeSet<String>,
}

impl BodyVisitor {
    fn classify_argument(&mut self, arg: Option<&syn::Expr>) {
        match arg {
            Some(syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. })) => {
                self.actions.insert(s.value());
            }
            Some(syn::Expr::Path(p)) if p.path.get_ident().is_some() => {
                self.classified_consts.insert(p.path.segments[0].ident.to_string());
            }
            other => panic!(
                "{CLASSIFY} called with an action that is neither a string literal nor a constant: {}",
                other.map(quote_expr).unwrap_or_default()
            ),
        }
    }

    /// Macro bodies (`tokio::join!`, `format!`...) are token streams to syn: an identifier followed by a
    /// parenthesised group is a call; a string literal right after `classify_sdk_error(` is an action.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Ident(ident) => {
                    if let Some(TokenTree::Group(g)) = trees.get(i + 1) {
                        if g.delimiter() == proc_macro2::Delimiter::Parenthesis {
                            let name = ident.to_string();
                            if name == CLASSIFY {
                                match g.stream().into_iter().next() {
                                    Some(TokenTree::Literal(lit)) => {
                                        let text = lit.to_string();
                                        self.actions.insert(text.trim_matches('"').to_string());
                                    }
                                    Some(TokenTree::Ident(c)) => {
                                        self.classified_consts.insert(c.to_string());
                                    }
                                    other => panic!("{CLASSIFY} in a macro with {other:?}"),
                                }
                            } else {
                                self.calls.insert(name);
                            }
                        }
                    }
                }
                TokenTree::Group(g) => self.scan_tokens(g.stream()),
                _ => {}
            }
        }
    }
}

fn quote_expr(e: &syn::Expr) -> String {
    use quote::ToTokens;
    e.to_token_stream().to_string()
}

impl<'ast> Visit<'ast> for BodyVisitor {
    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let syn::Expr::Path(p) = call.func.as_ref() {
            if let Some(last) = p.path.segments.last() {
                let name = last.ident.to_string();
                if name == CLASSIFY {
                    self.classify_argument(call.args.first());
                } else {
                    self.calls.insert(name);
                }
            }
        }
        syn::visit::visit_expr_call(self, call);
    }
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        self.calls.insert(call.method.to_string());
        syn::visit::visit_expr_method_call(self, call);
    }
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan_tokens(mac.tokens.clone());
    }
    // Paths used as values (`.map_err(my_fn)`, `service_fn(handler::handle)`) reach those functions too.
    fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
        if let Some(last) = p.path.segments.last() {
            self.calls.insert(last.ident.to_string());
        }
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn index_sources(sources: &[(String, String)]) -> Index {
    let mut index = Index::default();
    for (name, text) in sources {
        let file = syn::parse_file(text).unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
        ItemCollector { index: &mut index }.visit_file(&file);
    }
    // Resolve actions named through constants.
    let consts = index.string_consts.clone();
    for body in index.functions.values_mut() {
        let named: Vec<String> = body
            .calls
            .iter()
            .filter_map(|c| c.strip_prefix("const:"))
            .map(str::to_string)
            .collect();
        for c in named {
            let value = consts
                .get(&c)
                .unwrap_or_else(|| panic!("{CLASSIFY}({c}, ...): constant {c} not found"));
            body.actions.insert(value.clone());
        }
    }
    index
}

/// The non-test source files under `dir`: a module declared `#[cfg(test)] mod name;` lives in a file of
/// its own (`name.rs` or `name/mod.rs` next to the declaring file, or under its directory), which is left
/// out with everything below it.
fn read_sources(dir: &Path) -> Vec<(String, String)> {
    let files: Vec<(PathBuf, String)> = rust_files(dir)
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, text)
        })
        .collect();
    let mut test_modules: Vec<PathBuf> = Vec::new();
    for (path, text) in &files {
        let file = syn::parse_file(text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        let parent = path.parent().unwrap_or(dir);
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        // Children of `a.rs` live in `a/`; children of `mod.rs`, `lib.rs`, `main.rs` next to it.
        let module_dir = if ["mod", "lib", "main"].contains(&stem) {
            parent.to_path_buf()
        } else {
            parent.join(stem)
        };
        for item in &file.items {
            if let syn::Item::Mod(m) = item {
                if m.content.is_none() && is_cfg_test(&m.attrs) {
                    test_modules.push(module_dir.join(format!("{}.rs", m.ident)));
                    test_modules.push(module_dir.join(m.ident.to_string()));
                }
            }
        }
    }
    files
        .into_iter()
        .filter(|(path, _)| !test_modules.iter().any(|t| path.starts_with(t)))
        .map(|(path, text)| (path.display().to_string(), text))
        .collect()
}

/// The actions a crate reaches: its own, plus those of every core function reachable from its calls.
fn reachable_actions(core: &Index, krate: &Index) -> BTreeSet<String> {
    let mut actions: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    for body in krate.functions.values() {
        actions.extend(body.actions.iter().cloned());
        todo.extend(body.calls.iter().cloned());
    }
    let mut seen = BTreeSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(body) = core.functions.get(&name) {
            actions.extend(body.actions.iter().cloned());
            todo.extend(body.calls.iter().cloned());
        }
    }
    actions
}

fn with_implied(actions: &BTreeSet<String>) -> BTreeSet<String> {
    let mut all = actions.clone();
    for (action, implied, _why) in IMPLIED {
        if actions.contains(*action) {
            all.extend(implied.iter().map(|a| a.to_string()));
        }
    }
    all
}

#[test]
fn each_lambda_role_allows_exactly_the_actions_its_crate_calls() {
    let root = workspace_root();
    let template = load(&template_path());
    let core = index_sources(&read_sources(&root.join("crates/dms-core/src")));
    let core_actions: BTreeMap<&String, &BTreeSet<String>> = core
        .functions
        .iter()
        .filter(|(_, b)| !b.actions.is_empty())
        .map(|(n, b)| (n, &b.actions))
        .collect();
    eprintln!("core functions calling AWS: {core_actions:?}");

    let functions = lambda_functions(&template);
    assert!(
        functions.len() >= 7,
        "the template's Lambdas: {functions:?}"
    );
    let mut problems = Vec::new();
    let mut checked = 0;
    for function in &functions {
        let src = root.join("crates").join(&function.crate_name).join("src");
        if !src.is_dir() {
            eprintln!(
                "note: crate {} does not exist yet; {} not checked",
                function.crate_name, function.role_logical_id
            );
            continue;
        }
        checked += 1;
        let krate = index_sources(&read_sources(&src));
        let called = reachable_actions(&core, &krate);
        let mut expected = with_implied(&called);
        // A function in a VPC: Lambda creates and removes its network interfaces with its role.
        if template["Resources"][&function.logical_id]["Properties"]
            .get("VpcConfig")
            .is_some()
        {
            expected.extend(VPC_ENI_ACTIONS.iter().map(|a| a.to_string()));
        }
        let allowed: BTreeSet<String> = role_allowed_actions(&template, &function.role_logical_id)
            .into_iter()
            .filter(|a| !a.starts_with("logs:"))
            .collect();
        let missing: Vec<&String> = expected.difference(&allowed).collect();
        let extra: Vec<&String> = allowed.difference(&expected).collect();
        eprintln!(
            "{}: code calls {called:?}; {} allows {allowed:?}",
            function.crate_name, function.role_logical_id
        );
        if !missing.is_empty() {
            problems.push(format!(
                "{} ({}) lacks {missing:?}, which crate {} calls",
                function.role_logical_id, function.logical_id, function.crate_name
            ));
        }
        if !extra.is_empty() {
            problems.push(format!(
                "{} ({}) allows {extra:?}, which crate {} never calls",
                function.role_logical_id, function.logical_id, function.crate_name
            ));
        }
    }
    assert!(checked >= 1, "no Lambda crate found to check");
    assert!(
        problems.is_empty(),
        "IAM roles out of step with the code:\n{}",
        problems.join("\n")
    );
}

// The derivation itself, on small sources, so a blind spot in it shows here rather than as a role that
// silently passes.
#[test]
fn the_derivation_follows_calls_through_core_and_ignores_tests() {
    let core = index_sources(&[(
        "core.rs".into(),
        r#"
        const DELETE: &str = "s3:DeleteObjectVersion";
        pub trait Bucket { fn list(&self); }
        impl Bucket for Real {
            async fn list(&self) {
                self.client.list().send().await.map_err(|e| classify_sdk_error("s3:ListBucketVersions", b, &e))?;
            }
        }
        pub async fn empty(b: &impl Bucket) { b.list().await; remove(b).await }
        async fn remove(b: &impl Bucket) { x.map_err(|e| classify_sdk_error(DELETE, b, &e)) }
        pub async fn unrelated() { y.map_err(|e| classify_sdk_error("ec2:RunInstances", "", &e)) }
        pub async fn in_macro() { tokio::join!(other.unrelated(), z) }
        #[cfg(test)]
        mod tests { fn fake() { classify_sdk_error("iam:CreateUser", "", &e); } }
        "#
        .into(),
    )]);
    let crate_calling = |src: &str| index_sources(&[("main.rs".into(), src.into())]);

    let called = reachable_actions(
        &core,
        &crate_calling("async fn handle(b: &B) { dms_core::empty(b).await }"),
    );
    assert_eq!(
        called,
        ["s3:DeleteObjectVersion", "s3:ListBucketVersions"]
            .map(String::from)
            .into(),
        "through a free function, a trait method and a constant"
    );
    let called = reachable_actions(
        &core,
        &crate_calling("async fn handle() { in_macro().await }"),
    );
    assert_eq!(
        called,
        ["ec2:RunInstances".to_string()].into(),
        "through a macro"
    );
    let called = reachable_actions(
        &core,
        &crate_calling(
            r#"fn main() { sns.publish().send().await.map_err(|e| classify_sdk_error("sns:Publish", t, &e)); }
            #[cfg(test)] mod tests { fn t() { dms_core::empty(b) } }"#,
        ),
    );
    assert_eq!(
        called,
        ["sns:Publish".to_string()].into(),
        "own calls, test code ignored"
    );
    assert_eq!(
        with_implied(&called),
        ["kms:Decrypt", "kms:GenerateDataKey*", "sns:Publish"]
            .map(String::from)
            .into()
    );
}
