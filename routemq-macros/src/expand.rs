//! Code generation for `#[job]`: serde impls, `JobMeta`, the registration and the `Job` check.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Fields, Item, ItemStruct, Path};

use crate::attr::{Errors, JobArgs};

/// Expands `#[job(args)] item`. On error the item is emitted unchanged beside the errors, so that
/// the rest of the user's code still resolves the type and only the real mistakes are reported.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let mut job_args = JobArgs::default();
    let parser = syn::meta::parser(|meta| job_args.parse_entry(&meta, &mut errors));
    if let Err(error) = syn::parse::Parser::parse2(parser, args) {
        errors.push(error);
    }
    job_args.check(&mut errors);

    let item = match syn::parse2::<Item>(input.clone()) {
        Ok(item) => item,
        Err(error) => {
            errors.push(error);
            return with_errors(input, errors);
        }
    };
    let generics_ok = matches!(&item, Item::Struct(s) if s.generics.params.is_empty() && s.generics.where_clause.is_none());
    let Some(item) = check_item(item, &mut errors) else {
        return with_errors(input, errors);
    };
    if !generics_ok {
        return with_errors(input, errors);
    }
    // Argument errors still get a full expansion (with defaults for the bad arguments), so that the
    // user's `impl Job` does not add a cascade of unrelated errors to the real ones.
    let expansion = generate(&job_args, item);
    with_errors(expansion, errors)
}

fn with_errors(mut input: TokenStream, errors: Errors) -> TokenStream {
    if let Err(error) = errors.into_result() {
        input.extend(error.to_compile_error());
    }
    input
}

/// Accepts a non-generic struct; records a spanned error for anything else.
fn check_item(item: Item, errors: &mut Errors) -> Option<ItemStruct> {
    const ONLY_STRUCTS: &str =
        "#[job] can only be used on a struct: a job is a struct whose fields are its payload";
    match item {
        Item::Struct(item) => {
            if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
                errors.push(syn::Error::new(
                    item.generics.span(),
                    "#[job] types cannot be generic or carry lifetimes: the registry needs one concrete type \
                     per job name, and a queued job must own its data",
                ));
            }
            Some(item)
        }
        Item::Enum(item) => {
            errors.at(item.enum_token.span, ONLY_STRUCTS);
            None
        }
        Item::Union(item) => {
            errors.at(item.union_token.span, ONLY_STRUCTS);
            None
        }
        Item::Fn(item) => {
            errors.at(item.sig.fn_token.span, ONLY_STRUCTS);
            None
        }
        other => {
            errors.at(other.span(), ONLY_STRUCTS);
            None
        }
    }
}

fn generate(args: &JobArgs, mut item: ItemStruct) -> TokenStream {
    let root: Path = args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::routemq));
    let ident = item.ident.clone();
    let serde_impls = serde_impls(&root, &mut item);
    let meta_impl = meta_impl(args, &root, &ident);
    let type_name = ident.to_string();

    // Spanned at the struct's name so that a missing `impl Job` points at the user's type.
    let registration = quote_spanned! {ident.span()=>
        #root::__private::inventory::submit! {
            #root::__private::JobRegistration::new::<#ident>(#root::__private::RegistrationSite {
                type_name: #type_name,
                module_path: ::core::module_path!(),
                file: ::core::file!(),
                line: ::core::line!(),
            })
        }
    };

    quote! {
        #item

        #[allow(non_upper_case_globals, unused_qualifications, clippy::all, clippy::pedantic)]
        const _: () = {
            #serde_impls
            #meta_impl
            #registration
        };
    }
}

fn meta_impl(args: &JobArgs, root: &Path, ident: &syn::Ident) -> TokenStream {
    let name = match &args.name {
        Some(name) => quote!(#name),
        None => {
            let type_name = ident.to_string();
            quote! {{
                const __ROUTEMQ_PATH: &str = ::core::module_path!();
                const __ROUTEMQ_LEN: usize = #root::__private::dotted_len(__ROUTEMQ_PATH, #type_name);
                const __ROUTEMQ_BYTES: [u8; __ROUTEMQ_LEN] =
                    #root::__private::dotted::<__ROUTEMQ_LEN>(__ROUTEMQ_PATH, #type_name);
                #root::__private::utf8(&__ROUTEMQ_BYTES)
            }}
        }
    };
    let max_tries = args.max_tries.unwrap_or(3);
    let timeout = args.timeout.unwrap_or(60);
    let retry_after = args.retry_after.unwrap_or(0);
    let queue = args.queue.as_deref().unwrap_or("default");
    let connection = optional(args.connection.as_ref().map(|c| quote!(#c)));
    let backoff = args.backoff.unwrap_or(false);
    let max_delay = optional(
        args.max_delay
            .map(|v| Literal::f64_suffixed(v).into_token_stream()),
    );
    let jitter = optional(
        args.jitter
            .map(|v| Literal::f64_suffixed(v).into_token_stream()),
    );
    let unique_for = optional(args.unique_for.map(|v| quote!(#v)));
    let max_exceptions = optional(args.max_exceptions.map(|v| quote!(#v)));
    let retry_until = optional(args.retry_until.map(|v| quote!(#v)));
    let priority = args.priority.unwrap_or(0);
    let encrypted = args.encrypted.unwrap_or(false);
    let unique_until = if args.unique_until_finish.unwrap_or(true) {
        quote!(#root::UniqueUntil::Finish)
    } else {
        quote!(#root::UniqueUntil::Start)
    };
    let dispatched = if args.unique_for.is_some() {
        quote!(#root::queue::Dispatched)
    } else {
        quote!(::std::string::String)
    };
    quote! {
        impl #root::JobMeta for #ident {
            type Dispatched = #dispatched;
            const NAME: &'static str = #name;
            const OPTIONS: #root::JobOptions = #root::JobOptions {
                max_tries: #max_tries,
                timeout: #timeout,
                retry_after: #retry_after,
                queue: #queue,
                connection: #connection,
                backoff: #backoff,
                max_delay: #max_delay,
                jitter: #jitter,
                unique_for: #unique_for,
                unique_until: #unique_until,
                max_exceptions: #max_exceptions,
                retry_until: #retry_until,
                priority: #priority,
                encrypted: #encrypted,
            };
        }
    }
}

fn optional(value: Option<TokenStream>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}

/// Serde support. Named structs get the derives directly; tuple and unit structs are encoded
/// through a named shadow struct so that `data` is always a JSON object, as RouteMQ requires
/// (tuple fields become the keys `"0"`, `"1"`, ...).
fn serde_impls(root: &Path, item: &mut ItemStruct) -> TokenStream {
    let serde_path = quote!(#root::__private::serde).to_string();
    if let Fields::Named(_) = item.fields {
        let derive: Attribute = syn::parse_quote!(
            #[derive(#root::__private::serde::Serialize, #root::__private::serde::Deserialize)]
        );
        let krate: Attribute = syn::parse_quote!(#[serde(crate = #serde_path)]);
        item.attrs.splice(0..0, [derive, krate]);
        return TokenStream::new();
    }

    let ident = &item.ident;
    let container_attrs = take_serde_attrs(&mut item.attrs);
    let mut names = Vec::new();
    let mut types = Vec::new();
    let mut field_attrs = Vec::new();
    let mut keys = Vec::new();
    for (index, field) in item.fields.iter_mut().enumerate() {
        names.push(format_ident!("__f{}", index));
        types.push(field.ty.clone());
        field_attrs.push(take_serde_attrs(&mut field.attrs));
        keys.push(index.to_string());
    }
    let indices = (0..names.len()).map(syn::Index::from);
    let construct = if let Fields::Unit = item.fields {
        quote!(#ident)
    } else {
        quote!(#ident(#(__value.#names),*))
    };
    let lifetime = if names.is_empty() {
        quote!()
    } else {
        quote!(<'__a>)
    };
    let span = Span::call_site();
    quote_spanned! {span=>
        #[derive(#root::__private::serde::Serialize)]
        #[serde(crate = #serde_path)]
        #(#container_attrs)*
        struct __RouteMqSer #lifetime { #( #(#field_attrs)* #[serde(rename = #keys)] #names: &'__a #types, )* }

        #[derive(#root::__private::serde::Deserialize)]
        #[serde(crate = #serde_path)]
        #(#container_attrs)*
        struct __RouteMqDe { #( #(#field_attrs)* #[serde(rename = #keys)] #names: #types, )* }

        impl #root::__private::serde::Serialize for #ident {
            fn serialize<__S>(&self, __serializer: __S) -> ::core::result::Result<__S::Ok, __S::Error>
            where
                __S: #root::__private::serde::Serializer,
            {
                #root::__private::serde::Serialize::serialize(&__RouteMqSer { #(#names: &self.#indices,)* }, __serializer)
            }
        }

        impl<'de> #root::__private::serde::Deserialize<'de> for #ident {
            fn deserialize<__D>(__deserializer: __D) -> ::core::result::Result<Self, __D::Error>
            where
                __D: #root::__private::serde::Deserializer<'de>,
            {
                let __value = <__RouteMqDe as #root::__private::serde::Deserialize>::deserialize(__deserializer)?;
                ::core::result::Result::Ok(#construct)
            }
        }
    }
}

/// Removes and returns the `#[serde(...)]` attributes (they move to the shadow structs).
fn take_serde_attrs(attrs: &mut Vec<Attribute>) -> Vec<Attribute> {
    let (serde, rest): (Vec<_>, Vec<_>) = std::mem::take(attrs)
        .into_iter()
        .partition(|a| a.path().is_ident("serde"));
    *attrs = rest;
    serde
}
