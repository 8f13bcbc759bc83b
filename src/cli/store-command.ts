import { Command, Option } from "commander";
import { ConfigError, KmsEnvelopeError } from "../errors.js";
import type { FieldLayer } from "../fields/field-layer.js";
import { EncryptedStore } from "../store/encrypted-store.js";
import { listRecords } from "../store/record-listing.js";
import type { RecordRepository } from "../store/repository.js";
import { drainingWriter } from "./draining-writer.js";
import {
  addFieldLayerFlags,
  type FieldLayerFlags,
  fieldLayerFromFlags,
} from "./field-layer-flags.js";
import { addGuardOption, type GuardMode, guardFor } from "./guard-flag.js";
import { numberedLines } from "./json-lines.js";
import { addStoreOptions, openStoreFromFlags, type StoreFlags } from "./store-flags.js";
import { checkPlacement, type RecordPlacement } from "./store-input.js";
import { putRecords } from "./store-put.js";

interface ListFlags extends StoreFlags {
  resource: string;
  workspace?: string;
}

interface ReadFlags extends FieldLayerFlags, StoreFlags {
  resource: string;
  adoptPlaintext?: boolean;
}

interface GetFlags extends ReadFlags {
  id: string;
  workspace?: string;
}

interface FindFlags extends ReadFlags {
  where: { field: string; value: string };
  workspace: string;
}

/** Records `store find` asks for at a time. */
const FIND_PAGE = 500;

/** `--where FIELD=VALUE`, split at the first "=" (a value may contain more). */
function whereClause(text: string): { field: string; value: string } {
  const at = text.indexOf("=");
  if (at <= 0)
    // The text is not repeated: its value part may be the very plaintext being looked for.
    throw new ConfigError(
      "--where",
      "is not FIELD=VALUE",
      "name the field, then = and the value: --where email=VALUE",
    );
  return { field: text.slice(0, at), value: text.slice(at + 1) };
}

interface PutFlags extends FieldLayerFlags, StoreFlags {
  resource: string;
  idField: string;
  subjectField?: string;
  workspace?: string;
  workspaceField?: string;
  replace?: boolean;
  guard: GuardMode;
}

/** Why a listing printed nothing: the resource name may be mistyped, so name what is there. */
async function describeEmptyListing(
  repository: RecordRepository,
  flags: ListFlags,
): Promise<string> {
  if (flags.workspace !== undefined)
    return `no records of ${JSON.stringify(flags.resource)} in workspace ${JSON.stringify(flags.workspace)}`;
  const resources = await repository.resources();
  return `no records of ${JSON.stringify(flags.resource)}; ${
    resources.length === 0
      ? "the store holds no records at all"
      : `the store holds records of ${resources.map((name) => JSON.stringify(name)).join(", ")}`
  }`;
}

/** `store put`: NDJSON records on stdin, sealed by the field layer, into the store. */
function putCommand(): Command {
  const command = new Command("put")
    .description(
      "store the NDJSON records read on stdin, their encrypted fields sealed by the field map; stops at the first bad line, keeping the lines before it",
    )
    .requiredOption(
      "--resource <resource>",
      "resource the records belong to, as the field map names it",
    )
    .option("--id-field <field>", "property holding each record's id (a plain field)", "id")
    .option(
      "--subject-field <field>",
      "property holding each record's data subject (owner), if any",
    )
    .addOption(
      new Option("--workspace <workspace>", "workspace of every record").conflicts(
        "workspaceField",
      ),
    )
    .option("--workspace-field <field>", "property holding each record's workspace")
    .option(
      "--replace",
      "replace records that exist (keeping their subject and workspace) instead of stopping at them",
    );
  addGuardOption(command);
  return addStoreOptions(addFieldLayerFlags(command)).action(async (flags: PutFlags) => {
    const codec = await fieldLayerFromFlags(flags);
    try {
      // Before the store is opened (and maybe created) and before stdin is read.
      codec.checkResource(flags.resource);
      const encryptedPaths = codec.encryptedPaths(flags.resource);
      const placement: RecordPlacement = {
        idField: flags.idField,
        subjectField: flags.subjectField,
        workspaceField: flags.workspaceField,
        workspace: flags.workspace,
        workspaceRequired: codec.fieldMap.resources.get(flags.resource)?.route === "field-service",
      };
      checkPlacement(placement, flags.resource, encryptedPaths);
      const repository = await openStoreFromFlags(flags);
      try {
        const counts = await putRecords(
          numberedLines(process.stdin),
          { store: new EncryptedStore({ repository, codec }), repository, encryptedPaths },
          {
            resource: flags.resource,
            placement,
            replace: flags.replace === true,
            guard: guardFor(codec.fieldMap, flags.guard),
          },
        );
        const total = counts.created + counts.replaced;
        process.stderr.write(
          `stored ${total} record${total === 1 ? "" : "s"} in ${flags.resource}${counts.replaced === 0 ? "" : ` (${counts.replaced} replaced)`}\n`,
        );
      } finally {
        await repository.close();
      }
    } finally {
      await codec.close();
    }
  });
}

/** `store list`: ids and stamps as NDJSON, read-only, with no key, field map or daemon. */
function listCommand(): Command {
  const command = new Command("list")
    .description(
      "print each record's id, subject, workspace, version and field stamps (which key encrypted what) as NDJSON; decrypts nothing",
    )
    .requiredOption("--resource <resource>", "resource whose records to list")
    .option("--workspace <workspace>", "only records of this workspace");
  return addStoreOptions(command).action(async (flags: ListFlags) => {
    const repository = await openStoreFromFlags(flags, { readOnly: true });
    try {
      const write = drainingWriter(process.stdout);
      let count = 0;
      for await (const record of listRecords(repository, flags.resource, {
        workspace: flags.workspace,
      })) {
        await write(`${JSON.stringify(record)}\n`);
        count++;
      }
      if (count === 0)
        process.stderr.write(`kms-envelope: ${await describeEmptyListing(repository, flags)}\n`);
    } finally {
      await repository.close();
    }
  });
}

/**
 * What get and find share: the field layer, the resource and the command's own flags checked
 * before the store is opened (so a mistyped name fails as UNMAPPED_RESOURCE and no store is
 * touched), the store opened read-only, and both closed however `read` ends.
 */
async function readThroughFieldLayer(
  flags: ReadFlags,
  read: (store: EncryptedStore) => Promise<void>,
  checkFlags: (codec: FieldLayer) => void = () => {},
): Promise<void> {
  const codec = await fieldLayerFromFlags(flags);
  try {
    codec.checkResource(flags.resource);
    checkFlags(codec);
    const repository = await openStoreFromFlags(flags, { readOnly: true });
    try {
      await read(
        new EncryptedStore({ repository, codec, adoptPlaintext: flags.adoptPlaintext === true }),
      );
    } finally {
      await repository.close();
    }
  } finally {
    await codec.close();
  }
}

/** Adds the read commands' --adopt-plaintext. */
function addAdoptOption(command: Command): Command {
  return command.option(
    "--adopt-plaintext",
    "read values stored in the clear before the field map listed their fields as they are (kms-envelope rewrap --adopt-plaintext encrypts them)",
  );
}

/** `store get`: one record, decrypted, as one JSON line. */
function getCommand(): Command {
  const command = new Command("get")
    .description(
      "print one record's document with its encrypted fields decrypted, as one JSON line",
    )
    .requiredOption("--resource <resource>", "resource of the record, as the field map names it")
    .requiredOption("--id <id>", "record id")
    .option(
      "--workspace <workspace>",
      "only a record of this workspace (another workspace's record is reported as not found)",
    );
  return addStoreOptions(addFieldLayerFlags(addAdoptOption(command))).action((flags: GetFlags) =>
    readThroughFieldLayer(flags, async (store) => {
      const record = await store.read(flags.resource, flags.id, { workspace: flags.workspace });
      if (record === undefined)
        throw new KmsEnvelopeError(
          "RECORD_NOT_FOUND",
          `no record ${JSON.stringify(flags.id)} of ${flags.resource}${flags.workspace === undefined ? "" : ` in workspace ${JSON.stringify(flags.workspace)}`}; kms-envelope store list --resource ${flags.resource} shows the ids`,
        );
      process.stdout.write(`${JSON.stringify(record.document)}\n`);
      if (record.plaintextFields.length > 0)
        process.stderr.write(
          `kms-envelope: ${flags.resource} ${JSON.stringify(flags.id)} holds ${record.plaintextFields.join(", ")} in the clear: run kms-envelope rewrap --adopt-plaintext\n`,
        );
      else if (record.stale)
        process.stderr.write(
          `kms-envelope: ${flags.resource} ${JSON.stringify(flags.id)} was written by an older provider or key: run kms-envelope rewrap\n`,
        );
    }),
  );
}

/** A search the field map cannot answer is the invocation's fault, found before any search. */
function checkFindFlags(codec: FieldLayer, flags: FindFlags): void {
  if (flags.workspace === "")
    throw new ConfigError("--workspace", "is empty", "give the workspace to search");
  const searchable = codec.lookupPaths(flags.resource);
  if (!searchable.includes(flags.where.field))
    throw new ConfigError(
      "--where",
      `${flags.resource} ${flags.where.field} has no lookup, so it cannot be searched`,
      searchable.length === 0
        ? "declare a lookup for it in the field map, then run kms-envelope rewrap to compute the tokens of stored records"
        : `search ${searchable.join(", ")}, or declare a lookup for it in the field map and run kms-envelope rewrap`,
    );
}

/** `store find`: the records whose lookup field equals a value, decrypted, as NDJSON. */
function findCommand(): Command {
  const command = new Command("find")
    .description(
      "print the records whose field equals a value (after the field's lookup normalizers), decrypted, as NDJSON; the field needs a lookup in the field map",
    )
    .requiredOption("--resource <resource>", "resource searched, as the field map names it")
    .requiredOption("--where <field=value>", "the field and the value searched for", whereClause)
    .requiredOption("--workspace <workspace>", "workspace searched (lookups never cross them)");
  return addStoreOptions(addFieldLayerFlags(addAdoptOption(command))).action((flags: FindFlags) =>
    readThroughFieldLayer(
      flags,
      async (store) => {
        // Page by page, so a value thousands of records share streams out in bounded memory.
        const write = drainingWriter(process.stdout);
        let count = 0;
        let stale = 0;
        let after = "";
        for (;;) {
          const page = await store.find(flags.resource, {
            ...flags.where,
            workspace: flags.workspace,
            after,
            limit: FIND_PAGE,
          });
          for (const record of page) await write(`${JSON.stringify(record.document)}\n`);
          count += page.length;
          stale += page.filter((record) => record.stale).length;
          if (page.length < FIND_PAGE) break;
          after = (page[page.length - 1] as { id: string }).id;
        }
        if (count === 0)
          process.stderr.write(
            `kms-envelope: no record of ${flags.resource} in workspace ${JSON.stringify(flags.workspace)} has that ${flags.where.field}\n`,
          );
        else if (stale > 0)
          process.stderr.write(
            `kms-envelope: ${stale} of them written by an older provider or key: run kms-envelope rewrap\n`,
          );
      },
      (codec) => checkFindFlags(codec, flags),
    ),
  );
}

/**
 * `kms-envelope store put|get|list|find`: the encrypted store from the command line. put seals
 * through the field layer on the way in and get opens on the way out; list only reads stamps.
 */
export function storeCommand(): Command {
  return new Command("store")
    .description("put, get, list and find records of the encrypted store")
    .addCommand(putCommand())
    .addCommand(getCommand())
    .addCommand(listCommand())
    .addCommand(findCommand());
}
