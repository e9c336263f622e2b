"""flask-wtf forms of the contacts pages and the import: every POST carries a CSRF token and
is validated before anything is written. (The older contact forms are in app/forms.py.)"""
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (BooleanField, FieldList, Form, FormField, HiddenField, RadioField, SelectField,
                     SelectMultipleField, StringField, TextAreaField)
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from .forms import EmailAddress, options
from .services.import_rows import MAX_KEY, MAX_NAME, ON_EXISTING, ROLES, STATUSES, TYPES
from .services.sheets import DELIMITERS, ENCODINGS

ROLE_LABELS = {"ignore": "skip this column", "email": "email address", "name": "name", "status": "status",
               "tags": "tags", "attribute": "attribute"}
ON_EXISTING_LABELS = {
    "skip": "leave them as they are (they still join the lists)",
    "update": "update them: name and status from the file when given, attributes merged, tags added",
    "overwrite": "overwrite them: name from the file, attributes and tags replaced by the file's",
}


class ImportUploadForm(FlaskForm):
    file = FileField("CSV or Excel (.xlsx) file", validators=[FileRequired("Choose a file to import.")])
    encoding = SelectField("Encoding", choices=options([("", "detect it")] + list(ENCODINGS.items())), default="")


class ColumnForm(Form):
    """One column of the file: what it holds (a sub-form: the page's token covers it)."""
    role = SelectField(choices=options((r, ROLE_LABELS[r]) for r in ROLES), default="ignore")
    key = StringField(validators=[Optional(), Length(max=MAX_KEY)])
    kind = SelectField(choices=options((t, t) for t in TYPES), default="text")


class ImportMapForm(FlaskForm):
    columns = FieldList(FormField(ColumnForm), max_entries=1000)
    on_existing = RadioField("Addresses that are already contacts", default="update",
                             choices=options((o, ON_EXISTING_LABELS[o]) for o in ON_EXISTING))
    lists = SelectMultipleField("Add every address of the file to these lists", coerce=int, validators=[Optional()])
    new_list = StringField("…and to a new list named", validators=[Optional(), Length(max=200)])
    resubscribe = BooleanField("Resubscribe contacts who unsubscribed or bounced (only if they asked to be "
                               "subscribed again)")
    tag_separator = StringField("Tags are separated by", default=";", validators=[DataRequired(), Length(max=5)])
    # How the file is read, as shown in the preview above the form.
    encoding = HiddenField()
    delimiter = HiddenField()
    has_header = HiddenField()


class ContactEditForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=320), EmailAddress()])
    name = StringField("Name", validators=[Optional(), Length(max=MAX_NAME)])
    status = SelectField("Status", choices=options((s, s) for s in STATUSES))
    tags = StringField("Tags (comma-separated)", validators=[Optional(), Length(max=10_000)])
    attributes = TextAreaField("Attributes (JSON object)", validators=[Optional(), Length(max=100_000)])
    lists = SelectMultipleField("Lists", coerce=int, validators=[Optional()])

    def validate_tags(self, field):
        tags = [t.strip() for t in (field.data or "").split(",") if t.strip()]
        if any(len(t) > 100 for t in tags):
            raise ValidationError("a tag can have at most 100 characters")
        field.data = list(dict.fromkeys(tags))


BULK_ACTIONS = {"add_list": "add to list", "remove_list": "remove from list", "add_tag": "add tag",
                "remove_tag": "remove tag", "delete": "delete"}


class BulkForm(FlaskForm):
    """A bulk action on the ticked contacts (their `ids` checkboxes) or on everything the
    filter in the form's URL matches."""
    # Own ids: the contacts page shows this form next to the add and upload forms.
    action = SelectField("Action", choices=options(BULK_ACTIONS.items()), id="bulk_action")
    scope = RadioField("On", choices=options([("selected", "the ticked contacts"),
                                            ("filter", "every contact the filter matches")]),
                       default="selected")
    list_id = SelectField("List", coerce=int, validators=[Optional()], id="bulk_list_id")
    tag = StringField("Tag", validators=[Optional(), Length(max=100)], id="bulk_tag")


class EraseForm(FlaskForm):
    confirm = StringField("Type the address to confirm", validators=[DataRequired(), Length(max=320)])
