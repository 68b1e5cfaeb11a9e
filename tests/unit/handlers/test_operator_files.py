"""The conversation command of `eddy clear-orphaned-file-records`: an upload's record goes,
once, and only in its own workspace."""

from __future__ import annotations

from uuid import uuid4

from schemas import errors
from schemas.conversation import commands as cc
from schemas.conversation import events as ce
from tests.unit.handlers.harness import World, accepted, covers, rejected


@covers(cc.DeleteFileRecord)
def test_an_upload_record_is_deleted_once_in_its_workspace(world: World) -> None:
    file_id = uuid4()
    world.given(cc.RecordFileUpload(file_id=file_id, app_id=world.app(), user="ann",
                                    name="cat.png", size=3, extension="png",
                                    mime_type="image/png", key="k"))
    rejected(world.run(cc.DeleteFileRecord(file_id=file_id), as_=world.rival),
             errors.UploadFileNotFound)
    deleted = accepted(world.run(cc.DeleteFileRecord(file_id=file_id)), file_id=str(file_id))
    assert deleted.one(ce.FileDeleted) == ce.FileDeleted()
    rejected(world.run(cc.DeleteFileRecord(file_id=file_id)), errors.UploadFileNotFound)
    rejected(world.run(cc.DeleteFileRecord(file_id=uuid4())), errors.UploadFileNotFound)
